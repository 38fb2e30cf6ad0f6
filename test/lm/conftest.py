"""Fixtures for the decoder tests: one thread for tiny models, a tiny random Qwen2 saved locally."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is faster than two on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    """A tiny random Qwen2ForCausalLM written with save_pretrained (nothing is downloaded)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    out = tmp_path_factory.mktemp("qwen2_tiny")
    model.save_pretrained(out)
    return out, model
