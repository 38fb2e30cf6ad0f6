"""Fixtures for the inference tests (the toy LM itself lives in toy_stream_lm.py)."""
import pytest
import torch

from toy_stream_lm import ToyStreamLM
from ualm_tk.lm import TransformerDecoder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is faster than two on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def toy_lm():
    torch.manual_seed(0)
    dec = TransformerDecoder(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, max_positions=256)
    return ToyStreamLM(dec).eval()
