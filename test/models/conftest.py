import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lm_corpus import build_corpus  # noqa: E402


@pytest.fixture(scope="session")
def lm_corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("lm_corpus"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs on one intra-op thread (the shared ``one_thread`` fixture)."""
    yield
