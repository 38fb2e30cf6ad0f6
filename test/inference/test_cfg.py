"""Classifier-free guidance: one batch with cond + uncond rows, λ·cond + (1−λ)·uncond."""
import math

import pytest
import torch

from toy_stream_lm import EOS, EOT, PAD, naive_greedy, prompt_tokens
from ualm_tk.inference import (
    DecodeConfig, GuidanceError, SamplingConfig, cfg_combine, cfg_prompt_batch, generate, unconditional_tokens,
)
from ualm_tk.inference.cfg import plausibility_mask


def decode_config(lm, **kw):
    base = dict(allowed=lm.audio_allowed(), pad_id=PAD, stop_ids=[EOS, EOT], delays=list(range(lm.K)), max_steps=12,
                sampling=SamplingConfig(top_k=20, temperature=0.8))
    base.update(kw)
    return DecodeConfig(**base)


def test_cfg_combine_formula_and_lambda_one_is_exact():
    cond, uncond = torch.randn(3, 2, 7), torch.randn(3, 2, 7)
    both = torch.cat([cond, uncond])
    assert torch.allclose(cfg_combine(both, 3.0), 3.0 * cond - 2.0 * uncond, atol=1e-6)
    assert torch.equal(cfg_combine(both, 1.0), cond)
    assert torch.equal(cfg_combine(both, 0.0), uncond)
    with pytest.raises(GuidanceError, match="even number"):
        cfg_combine(both[:5], 3.0)


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf])
def test_bad_guidance_scale_is_rejected(toy_lm, bad):
    with pytest.raises(GuidanceError, match="guidance scale"):
        decode_config(toy_lm, guidance_scale=bad)


def test_unconditional_prompt_has_the_same_length_with_pads():
    toks = torch.arange(2 * 5 * 3).view(2, 5, 3) + 10
    cond = torch.zeros(2, 5, dtype=torch.bool)
    cond[:, 1:3] = True
    u = unconditional_tokens(toks, cond, PAD)
    assert u.shape == toks.shape
    assert (u[:, 1:3] == PAD).all() and torch.equal(u[:, [0, 3, 4]], toks[:, [0, 3, 4]])
    with pytest.raises(GuidanceError):
        unconditional_tokens(toks, cond[:, :4], PAD)


def test_prompts_of_different_length_are_left_padded():
    c, u = torch.randn(2, 5, 4), torch.randn(2, 2, 4)
    emb, mask = cfg_prompt_batch(c, u)
    assert emb.shape == (4, 5, 4) and mask.shape == (4, 5)
    assert mask[:2].all() and not mask[2:, :3].any() and mask[2:, 3:].all()
    assert torch.equal(emb[2:, 3:], u) and torch.equal(emb[:2], c)
    emb, mask = cfg_prompt_batch(c, c.clone())
    assert mask is None and emb.shape == (4, 5, 4)


@pytest.mark.parametrize("uncond_len", [None, 2])  # equal length (pads) / a shorter all-pad prefix
def test_cfg_with_lambda_one_equals_plain_sampling(toy_lm, uncond_len):
    with torch.no_grad():
        toy_lm.head.weight[[EOS, EOT]] *= 0.3  # long enough generations for guidance to matter
    prompt = prompt_tokens(2, 6, toy_lm)
    if uncond_len is None:
        cond_mask = torch.zeros(2, 6, dtype=torch.bool)
        cond_mask[:, 1:4] = True
        uncond = unconditional_tokens(prompt, cond_mask, PAD)
    else:
        uncond = torch.full((2, uncond_len, toy_lm.K), PAD)
    emb = toy_lm.embed_fn
    plain = generate(toy_lm.decoder, emb(prompt), emb, toy_lm.logits_fn, decode_config(toy_lm, num_samples=2),
                     generator=torch.Generator().manual_seed(11))
    guided = generate(toy_lm.decoder, emb(prompt), emb, toy_lm.logits_fn,
                      decode_config(toy_lm, num_samples=2, guidance_scale=1.0, cfg_plausibility=0.1),
                      uncond_prompt_embeds=emb(uncond),
                      generator=torch.Generator().manual_seed(11))
    assert torch.equal(plain.tokens, guided.tokens)
    assert torch.equal(plain.lengths, guided.lengths)
    assert plain.lengths.min() >= 6
    # and guidance changes the result when λ != 1
    strong = generate(toy_lm.decoder, emb(prompt), emb, toy_lm.logits_fn,
                      decode_config(toy_lm, num_samples=2, guidance_scale=3.0), uncond_prompt_embeds=emb(uncond),
                      generator=torch.Generator().manual_seed(11))
    assert not torch.equal(plain.tokens, strong.tokens)


def test_cfg_greedy_equals_separate_cond_and_uncond_recomputation(toy_lm):
    prompt = prompt_tokens(2, 5, toy_lm, seed=4)
    cond_mask = torch.zeros(2, 5, dtype=torch.bool)
    cond_mask[:, 1:] = True
    uncond = unconditional_tokens(prompt, cond_mask, PAD)
    cfg = decode_config(toy_lm, guidance_scale=3.0, sampling=SamplingConfig(greedy=True), max_steps=10)
    out = generate(toy_lm.decoder, toy_lm.embed_fn(prompt), toy_lm.embed_fn, toy_lm.logits_fn, cfg,
                   uncond_prompt_embeds=toy_lm.embed_fn(uncond))
    ref = naive_greedy(toy_lm, prompt, cfg.allowed, cfg.delays, cfg.max_steps, scale=3.0, uncond=uncond)
    for b, rows in enumerate(ref):
        assert out.tokens[b, : len(rows)].tolist() == rows


def test_plausibility_keeps_guidance_from_promoting_a_token_both_models_rule_out():
    # 4 codes + <eos> (id 4): the conditional model gives <eos> 1e-4, the unconditional one 1e-7
    cond = torch.log(torch.tensor([[[0.4, 0.3, 0.2, 0.0999, 1e-4]]]))  # [R=1, K=1, V=5]
    uncond = torch.log(torch.tensor([[[0.25, 0.25, 0.25, 0.25 - 1e-7, 1e-7]]]))
    guided = cfg_combine(torch.cat([cond, uncond]), 3.0)
    assert int(guided.argmax(-1)) == 4  # plain CFG: 3·log(1e-4) − 2·log(1e-7) ≈ +4.6 beats every code
    keep = plausibility_mask(cond, 0.1)
    assert keep.tolist() == [[[True, True, True, True, False]]]  # p >= 0.1 x 0.4 = 0.04
    assert int(guided.masked_fill(~keep, float("-inf")).argmax(-1)) == 0
    assert plausibility_mask(cond, 0.0).all()
    with pytest.raises(GuidanceError, match="plausibility alpha"):
        plausibility_mask(cond, 1.0)


def test_generation_never_samples_outside_the_plausible_set(toy_lm):
    prompt = prompt_tokens(1, 6, toy_lm)
    uncond = torch.full((1, 6, toy_lm.K), PAD)
    emb = toy_lm.embed_fn
    cfg = decode_config(toy_lm, guidance_scale=3.0, cfg_plausibility=0.3, max_steps=8,
                        sampling=SamplingConfig(top_k=50, temperature=2.0))
    seen = []

    def logits_fn(h):  # record each step's conditional row, as the sampler sees it
        out = toy_lm.logits_fn(h)
        seen.append(out[:1].clone())
        return out

    res = generate(toy_lm.decoder, emb(prompt), emb, logits_fn, cfg, uncond_prompt_embeds=emb(uncond),
                   generator=torch.Generator().manual_seed(0))
    from ualm_tk.inference.sampling import vocab_bias

    bias = vocab_bias(cfg.allowed)
    for t in range(res.tokens.shape[1]):
        keep = plausibility_mask(seen[t].float() + bias, 0.3)[0]  # [K, V]
        for k in range(toy_lm.K):
            tok = int(res.tokens[0, t, k])
            if tok != PAD:
                assert keep[k, tok], (t, k, tok)


def test_under_cfg_the_stop_keeps_its_conditional_probability():
    """Guidance re-ranks the codes; when to stop stays the conditional model's decision."""
    from ualm_tk.inference.cfg import keep_conditional_stop

    # 4 codes + <eos> (id 4): plain λ=3 CFG makes <eos> the top token (1e-4 vs 1e-7, see above)
    cond = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.0999, 1e-4]]))  # [R=1, V=5]
    uncond = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25 - 1e-7, 1e-7]]))
    guided = 3.0 * cond - 2.0 * uncond
    out = keep_conditional_stop(guided, cond, torch.tensor([4])).exp()[0]
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(out[4]) == pytest.approx(1e-4, rel=1e-4)  # the conditional stop probability
    g = torch.softmax(guided[0, :4], -1) * (1 - 1e-4)  # the codes: guided, rescaled
    assert torch.allclose(out[:4], g, atol=1e-6)
    # the reverse failure: the unconditional model stops far more often, so plain CFG never stops
    cond2 = torch.log(torch.tensor([[0.3, 0.2, 0.2, 0.1, 0.2]]))
    uncond2 = torch.log(torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.6]]))
    plain = torch.softmax(3.0 * cond2 - 2.0 * uncond2, -1)[0, 4]
    kept = keep_conditional_stop(3.0 * cond2 - 2.0 * uncond2, cond2, torch.tensor([4])).exp()[0, 4]
    assert float(plain) < 0.01 and float(kept) == pytest.approx(0.2, rel=1e-4)

