"""Stream vocabulary masks, greedy / top-k choice, seeded draws."""
import pytest
import torch

from ualm_tk.inference import SamplingConfig, SamplingError, sample_tokens, stream_vocab_mask, vocab_bias


def test_stream_vocab_mask_ranges_and_specials():
    allowed = stream_vocab_mask(20, [(4, 8), (8, 12)], [[0, 2], [0]])
    assert allowed.shape == (2, 20)
    assert torch.nonzero(allowed[0]).flatten().tolist() == [0, 2, 4, 5, 6, 7]
    assert torch.nonzero(allowed[1]).flatten().tolist() == [0, 8, 9, 10, 11]
    shared = stream_vocab_mask(20, [(4, 8), (8, 12)], [1])
    assert shared[:, 1].all()
    bias = vocab_bias(allowed)
    assert (bias[allowed] == 0).all() and torch.isinf(bias[~allowed]).all()


@pytest.mark.parametrize(
    "ranges, specials, message",
    [
        ([(4, 30)], [], "not inside the vocabulary"),
        ([(8, 4)], [], "not inside"),
        ([(0, 0)], [], "allows no token"),
        ([(4, 8)], [25], "special id 25"),
        ([(4, 8), (8, 9)], [[0]], "per-stream lists"),
        ([], [], "at least one stream"),
    ],
)
def test_stream_vocab_mask_rejects_bad_specs(ranges, specials, message):
    with pytest.raises(SamplingError, match=message):
        stream_vocab_mask(20, ranges, specials)


def test_greedy_is_argmax_and_masked_ids_never_win():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 40)
    assert torch.equal(sample_tokens(logits, SamplingConfig(greedy=True)), logits.argmax(-1))
    allowed = stream_vocab_mask(40, [(0, 10), (10, 20), (20, 40)])
    tok = sample_tokens(logits + vocab_bias(allowed), SamplingConfig(greedy=True))
    assert ((tok[:, 0] < 10) & (tok[:, 1] >= 10) & (tok[:, 1] < 20) & (tok[:, 2] >= 20)).all()


def test_top_k_never_samples_outside_the_top_k():
    torch.manual_seed(0)
    logits = torch.randn(64, 2, 100)
    top = logits.topk(5, dim=-1).indices  # [64, 2, 5]
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        tok = sample_tokens(logits, SamplingConfig(top_k=5, temperature=3.0), g)
        assert (top == tok[..., None]).any(-1).all()
        seen.update(tok[0, 0:1].tolist())
    assert len(seen) > 1  # it really samples


def test_top_k_frequencies_follow_the_tempered_softmax():
    logits = torch.tensor([[[2.0, 1.0, 0.0, -1.0, 5.0]]]).expand(4000, 1, 5)
    cfg = SamplingConfig(top_k=3, temperature=2.0)
    tok = sample_tokens(logits, cfg, torch.Generator().manual_seed(1)).flatten()
    freq = torch.bincount(tok, minlength=5).float() / tok.numel()
    expected = torch.zeros(5)
    expected[[4, 0, 1]] = torch.softmax(torch.tensor([5.0, 2.0, 1.0]) / 2.0, 0)
    assert (freq - expected).abs().max() < 0.03
    assert freq[2] == 0 and freq[3] == 0


def test_seeded_generator_reproduces_draws():
    logits = torch.randn(8, 4, 50)
    cfg = SamplingConfig(top_k=20, temperature=0.8)
    a = sample_tokens(logits, cfg, torch.Generator().manual_seed(3))
    b = sample_tokens(logits, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw", [dict(top_k=0), dict(temperature=0.0), dict(temperature=-1.0)])
def test_sampling_config_rejects_bad_values(kw):
    with pytest.raises(SamplingError):
        SamplingConfig(**kw)
