"""Both registered decoders: KV-cache decoding equals full recomputation, padding, errors."""
import pytest
import torch

from ualm_tk.lm import (
    AbsDecoder, CacheOverflowError, DecoderInputError, HFDecoder, TransformerDecoder, build_decoder, decoder_choices,
)


def make(name, qwen2_dir):
    if name == "transformer":
        torch.manual_seed(0)
        return build_decoder("transformer", dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                                 max_positions=128)).eval()
    if name == "hf_static":
        return build_decoder("hf", dict(hf_model_dir=str(qwen2_dir[0]))).eval()
    return build_decoder("hf", dict(hf_model_dir=str(qwen2_dir[0]), cache_implementation="dynamic")).eval()


DECODERS = ["transformer", "hf_static", "hf_dynamic"]


def test_registry_lists_both_decoders():
    assert set(decoder_choices.classes) == {"transformer", "hf"}
    assert decoder_choices.default == "transformer"
    with pytest.raises(ValueError, match="--decoder must be one of"):
        build_decoder("lstm")


@pytest.mark.parametrize("name", DECODERS)
@torch.no_grad()
def test_cache_decoding_equals_full_recomputation(name, qwen2_dir):
    dec = make(name, qwen2_dir)
    assert isinstance(dec, AbsDecoder) and dec.hidden_size == 64
    x = torch.randn(3, 12, 64)  # [B, S, D]
    full, _ = dec(x)
    cache = dec.init_cache(3, 16)
    parts = [dec(x[:, :5], cache=cache)[0]]  # prefill
    parts.append(dec(x[:, 5:8], cache=cache)[0])  # a chunk after cached positions
    for t in range(8, 12):
        parts.append(dec(x[:, t:t + 1], cache=cache)[0])  # one position per step
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", DECODERS)
@torch.no_grad()
def test_left_padded_prefill_matches_unpadded_rows(name, qwen2_dir):
    dec = make(name, qwen2_dir)
    x = torch.randn(2, 7, 64)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, :3] = False  # row 1: 4 real tokens, left-padded
    cache = dec.init_cache(2, 10)
    h, _ = dec(x, cache=cache, attention_mask=mask)
    assert torch.isfinite(h).all()
    step = torch.randn(2, 1, 64)
    h2, _ = dec(step, cache=cache)
    alone, _ = dec(torch.cat([x[1:, 3:], step[1:]], 1))
    assert torch.allclose(h[1, 3:], alone[0, :4], atol=1e-5)
    assert torch.allclose(h2[1, 0], alone[0, 4], atol=1e-5)
    row0, _ = dec(torch.cat([x[:1], step[:1]], 1))
    assert torch.allclose(h2[0, 0], row0[0, -1], atol=1e-5)


@pytest.mark.parametrize("name", DECODERS)
@torch.no_grad()
def test_training_padding_mask_leaves_real_positions_unchanged(name, qwen2_dir):
    dec = make(name, qwen2_dir)
    x = torch.randn(2, 6, 64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # right padding in a training batch
    h, _ = dec(x, attention_mask=mask)
    alone, _ = dec(x[1:, :4])
    assert torch.allclose(h[1, :4], alone[0], atol=1e-5)
    assert torch.allclose(h[0], dec(x[:1])[0][0], atol=1e-5)


@pytest.mark.parametrize("name", DECODERS)
def test_bad_inputs_give_clear_errors(name, qwen2_dir):
    dec = make(name, qwen2_dir)
    cache = dec.init_cache(1, 4)
    with pytest.raises(CacheOverflowError, match="exceed the cache size 4"):
        dec(torch.randn(1, 5, 64), cache=cache)  # prompt longer than the cache
    with pytest.raises(DecoderInputError, match="empty prompt"):
        dec(torch.randn(1, 0, 64))
    with pytest.raises(DecoderInputError, match="hidden_size 64"):
        dec(torch.randn(1, 3, 32))
    with pytest.raises(DecoderInputError, match="attention_mask"):
        dec(torch.randn(1, 3, 64), attention_mask=torch.ones(1, 4))
    with pytest.raises(CacheOverflowError, match="128"):
        dec.init_cache(1, 129)
    with pytest.raises(ValueError, match="batch 1"):
        dec(torch.randn(2, 1, 64), cache=dec.init_cache(1, 4))


def test_static_cache_is_written_in_place():
    dec = TransformerDecoder(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=1).eval()
    cache = dec.init_cache(2, 8)
    assert tuple(cache.keys.shape) == (2, 2, 1, 8, 16)  # [L, B, n_kv, max_len, hd]: GQA stores 1 kv head
    ptr = cache.keys.data_ptr()
    with torch.no_grad():
        dec(torch.randn(2, 3, 64), cache=cache)
        dec(torch.randn(2, 1, 64), cache=cache)
    assert cache.keys.data_ptr() == ptr and cache.length == 4
    assert cache.keys[:, :, :, :4].abs().sum(-1).gt(0).all() and (cache.keys[:, :, :, 4:] == 0).all()
    assert cache.next_pos.tolist() == [4, 4]


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = TransformerDecoder(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    b = TransformerDecoder(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, activation_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 9, 64)
    for m in (a, b):
        m.train()
        m(x)[0].pow(2).mean().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


def test_transformer_config_errors_and_presets():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        TransformerDecoder(hidden_size=64, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="not divisible"):
        TransformerDecoder(hidden_size=66, num_heads=4)
    with pytest.raises(ValueError, match="unknown transformer preset"):
        TransformerDecoder.from_preset("huge")
    tiny = TransformerDecoder.from_preset("tiny")
    assert 0.5e6 < tiny.num_parameters() < 1.5e6


@torch.no_grad()
def test_attention_dropout_is_separate_from_residual_dropout():
    """``attention_dropout: 0.0`` with ``dropout > 0``: only the residual branches drop (SDPA stays fused)."""
    x = torch.randn(2, 9, 64)

    def dec(**rates):
        torch.manual_seed(0)
        return TransformerDecoder(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, **rates)

    residual_only = dec(dropout=0.3, attention_dropout=0.0)
    for block in residual_only.blocks:
        block.resid_dropout = torch.nn.Identity()  # what is left to drop is the attention weights: nothing
    eval_out = residual_only.eval()(x)[0]
    assert torch.equal(residual_only.train()(x)[0], eval_out)
    attention_only = dec(dropout=0.0, attention_dropout=0.3).train()
    assert not torch.allclose(attention_only(x)[0], eval_out)  # same weights, attention weights dropped
    assert dec(dropout=0.2).blocks[0].attn.dropout == 0.2  # default: attention drops at the residual rate
    for bad in (dict(dropout=1.0), dict(attention_dropout=-0.1)):
        with pytest.raises(ValueError, match="must be in \\[0, 1\\)"):
            dec(**bad)


def test_transformer_trains_on_a_repeated_sequence():
    torch.manual_seed(0)
    dec = TransformerDecoder.from_preset("tiny", dropout=0.1).train()
    embed, head = torch.nn.Embedding(50, 128), torch.nn.Linear(128, 50)
    opt = torch.optim.AdamW([*dec.parameters(), *embed.parameters(), *head.parameters()], lr=3e-3)
    ids = torch.randint(0, 50, (4, 24))
    losses = []
    for _ in range(10):
        hidden, _ = dec(embed(ids[:, :-1]))
        loss = torch.nn.functional.cross_entropy(head(hidden).flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


@torch.no_grad()
def test_rope_makes_attention_depend_on_relative_positions_only():
    torch.manual_seed(0)
    dec = TransformerDecoder(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, max_positions=64,
                             init_std=0.2).eval()  # large weights: attention visibly moves the residual stream
    x = torch.randn(1, 8, 64)
    base, _ = dec(x)
    shifted, _ = dec(x, positions=torch.arange(8)[None] + 13)
    assert torch.allclose(base, shifted, atol=1e-4)
    spread, _ = dec(x, positions=torch.arange(8)[None] * 3)  # different relative distances
    assert (base[:, 1:] - spread[:, 1:]).abs().max() > 0.05
    with pytest.raises(CacheOverflowError, match="max_positions"):
        dec(x, positions=torch.arange(8)[None] + 60)
