"""ualm_tk: a toolkit for the Unified Audio Language Model (UALM)."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).resolve().parent
requirements = [
    line.split("#", 1)[0].strip()
    for line in (here / "tools" / "requirements.txt").read_text().splitlines()
    if line.split("#", 1)[0].strip()
]

setup(
    name="ualm_tk",
    version="0.1.0",
    description="Unified Audio Language Model toolkit: understanding, generation and reasoning",
    packages=find_packages(include=["ualm_tk", "ualm_tk.*"]),
    package_data={"ualm_tk.lm": ["csrc/*.cpp"]},  # compiled on first use (ualm_tk/lm/gemv_kernel.py)
    python_requires=">=3.10",
    install_requires=requirements,
)
