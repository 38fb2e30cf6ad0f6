"""Fixtures for the VAE tests: real 48 kHz masters made with sox, and their 16 kHz stand-in inputs."""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from ualm_tk.audio.io import load_audio, save_audio
from ualm_tk.data.kaldi_files import write_kaldi_file
from ualm_tk.vae.degrade import degrade

TINY_YAML = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/ualm1/conf/vae/tiny.yaml"

# sox synthesis commands of 48 kHz masters with energy above 8 kHz (stereo and mono)
MASTERS = {
    "chirp_st": (2, ["synth", "1.0", "sine", "300-15000", "vol", "0.3"]),
    "noise_mono": (1, ["synth", "1.0", "pinknoise", "vol", "0.2"]),
    "square_st": (2, ["synth", "1.0", "square", "440", "vol", "0.2"]),
    "saw_mono": (1, ["synth", "1.2", "sawtooth", "220", "vol", "0.2"]),
}


@pytest.fixture()
def one_thread():
    """Small convolutions run fastest on one thread (and the CPU is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_conf():
    with open(TINY_YAML, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory):
    """``DIR/master.scp`` (48 kHz, mono and stereo) and ``DIR/lo.scp`` (16 kHz mono, mu-law)."""
    if shutil.which("sox") is None:
        pytest.fail("sox is required (tools/install_system.sh installs it)")
    d = tmp_path_factory.mktemp("vae_pairs")
    master, lo = {}, {}
    for key, (channels, args) in MASTERS.items():
        path = d / "master" / f"{key}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sox", "-n", "-r", "48000", "-b", "16", "-c", str(channels), str(path), *args], check=True)
        wav, sr = load_audio(path)
        lo_path = d / "lo" / f"{key}.wav"
        save_audio(lo_path, degrade(wav, sr, 16000, 8), 16000)
        master[key], lo[key] = str(path), str(lo_path)
    write_kaldi_file(d / "master.scp", master)
    write_kaldi_file(d / "lo.scp", lo)
    return d
