import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "models"))
from lm_corpus import build_corpus  # noqa: E402


@pytest.fixture(scope="module")
def lm_corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("lm_corpus_task"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin contention on the shared 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
