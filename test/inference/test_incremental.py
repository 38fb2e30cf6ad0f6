"""The decode loop: cache decoding equals recomputation, masks, delay rules, stops, n-best, seeds."""
import pytest
import torch

from toy_stream_lm import BOS, EOS, EOT, NUM_SPECIALS, PAD, naive_greedy, prompt_tokens
from ualm_tk.inference import DecodeConfig, GenerationError, SamplingConfig, generate, stream_vocab_mask


def config(lm, **kw):
    base = dict(allowed=lm.audio_allowed(), pad_id=PAD, stop_ids=[EOS, EOT], delays=list(range(lm.K)), max_steps=12)
    base.update(kw)
    return DecodeConfig(**base)


def run(lm, prompt, cfg, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return generate(lm.decoder, lm.embed_fn(prompt), lm.embed_fn, lm.logits_fn, cfg, generator=g, **kw)


def eos_after(lm, steps_by_row):
    """A logits_fn that makes stream 0 of row r emit <eos> at step steps_by_row[r]."""
    calls = {"t": 0}

    def fn(hidden):
        logits = lm.logits_fn(hidden).clone()
        t = calls["t"]
        logits[:, 0, EOS] = logits[:, 0, EOT] = -1e4
        for r, s in enumerate(steps_by_row):
            if s == t:
                logits[r, 0, EOS] = 1e4
        calls["t"] += 1
        return logits

    return fn


def test_greedy_cache_decoding_equals_full_recomputation(toy_lm):
    with torch.no_grad():
        toy_lm.head.weight[[EOS, EOT]] *= 0.7  # some rows stop by themselves, others are cut
    prompt = prompt_tokens(6, 5, toy_lm, seed=3)
    cfg = config(toy_lm, sampling=SamplingConfig(greedy=True), max_steps=14)
    out = run(toy_lm, prompt, cfg)
    ref = naive_greedy(toy_lm, prompt, cfg.allowed, cfg.delays, cfg.max_steps)
    assert out.finished.any() and not out.finished.all()  # natural stops and forced ends both covered
    for b, rows in enumerate(ref):
        assert out.lengths[b].item() == len(rows)
        assert out.tokens[b, : len(rows)].tolist() == rows
        assert (out.tokens[b, len(rows):] == PAD).all()


def test_modality_masks_hold_at_every_step(toy_lm):
    cfg = config(toy_lm, sampling=SamplingConfig(top_k=toy_lm.V, temperature=5.0), max_steps=30)
    out = run(toy_lm, prompt_tokens(3, 4, toy_lm), cfg, seed=7)
    for k in range(toy_lm.K):
        lo, hi = toy_lm.block(k)
        toks = out.tokens[:, :, k]
        ok = ((toks >= lo) & (toks < hi)) | (toks == PAD)
        if k == 0:
            ok |= (toks == EOS) | (toks == EOT)
        assert ok.all(), f"stream {k} emitted ids outside [{lo}, {hi})"
        # stream k really used its block (not only pads)
        assert ((toks >= lo) & (toks < hi)).any()


def test_delay_start_stop_and_tail(toy_lm):
    K = toy_lm.K
    stops = [3, 6]
    cfg = config(toy_lm, max_steps=20)
    g = torch.Generator().manual_seed(0)
    prompt = prompt_tokens(2, 4, toy_lm)
    out = generate(toy_lm.decoder, toy_lm.embed_fn(prompt), toy_lm.embed_fn, eos_after(toy_lm, stops), cfg, generator=g)
    assert out.finished.tolist() == [True, True]
    assert out.end_steps.tolist() == stops
    assert out.lengths.tolist() == [s + K - 1 for s in stops]
    assert out.tokens.shape[1] == max(stops) + K - 1  # loop stopped after the last row's tail
    for b, e in enumerate(stops):
        rows = out.tokens[b]
        assert rows[e, 0].item() == EOS
        for k in range(K):
            for t in range(rows.shape[0]):
                is_pad = rows[t, k].item() == PAD
                should_pad = t < k or t >= e + k
                if k == 0 and t == e:
                    continue
                assert is_pad == should_pad, f"row {b} stream {k} step {t}"


def test_max_steps_forces_a_well_formed_end(toy_lm):
    K = toy_lm.K
    cfg = config(toy_lm, max_steps=9, allowed=stream_vocab_mask(
        toy_lm.V, [toy_lm.block(k) for k in range(K)], [[PAD, EOS]] + [[PAD]] * (K - 1)))
    # a logits_fn that never lets eos win
    def no_eos(hidden):
        logits = toy_lm.logits_fn(hidden).clone()
        logits[:, 0, EOS] = -1e4
        return logits
    out = generate(toy_lm.decoder, toy_lm.embed_fn(prompt_tokens(2, 3, toy_lm)), toy_lm.embed_fn, no_eos, cfg,
                   generator=torch.Generator().manual_seed(0))
    assert out.finished.tolist() == [False, False]
    assert out.lengths.tolist() == [9, 9]
    assert out.end_steps.tolist() == [9 - (K - 1)] * 2
    assert (out.tokens[:, 9 - (K - 1), 0] == EOS).all()
    assert (out.tokens[:, -1, :K - 1] == PAD).all() and (out.tokens[:, -1, K - 1] != PAD).all()


def test_text_mode_stops_at_eos_without_tail(toy_lm):
    K = toy_lm.K
    allowed = stream_vocab_mask(toy_lm.V, [(NUM_SPECIALS, toy_lm.V)] + [(0, 0)] * (K - 1),
                                [[EOS, EOT]] + [[PAD]] * (K - 1))
    cfg = DecodeConfig(allowed=allowed, pad_id=PAD, stop_ids=[EOS, EOT], delays=[0] * K, max_steps=20,
                       sampling=SamplingConfig(greedy=True))
    prompt = prompt_tokens(2, 3, toy_lm)
    out = generate(toy_lm.decoder, toy_lm.embed_fn(prompt), toy_lm.embed_fn, eos_after(toy_lm, [4, 1]), cfg)
    assert out.lengths.tolist() == [5, 2]
    assert out.tokens[0, 4, 0].item() == EOS and out.tokens[1, 1, 0].item() == EOS
    assert (out.tokens[:, :, 1:] == PAD).all()
    assert (out.tokens[1, 2:] == PAD).all()


def test_greedy_is_deterministic_and_seeds_reproduce(toy_lm):
    prompt = prompt_tokens(2, 4, toy_lm)
    greedy = config(toy_lm, sampling=SamplingConfig(greedy=True))
    a, b = run(toy_lm, prompt, greedy, seed=1), run(toy_lm, prompt, greedy, seed=2)
    assert torch.equal(a.tokens, b.tokens)
    topk = config(toy_lm, sampling=SamplingConfig(top_k=8, temperature=1.5))
    c, d, e = run(toy_lm, prompt, topk, seed=5), run(toy_lm, prompt, topk, seed=5), run(toy_lm, prompt, topk, seed=6)
    assert torch.equal(c.tokens, d.tokens)
    assert not torch.equal(c.tokens, e.tokens)


def test_n_best_rows_are_prompt_major_and_distinct(toy_lm):
    prompt = prompt_tokens(2, 4, toy_lm)
    cfg = config(toy_lm, num_samples=3, sampling=SamplingConfig(top_k=8, temperature=1.5))
    out = run(toy_lm, prompt, cfg, seed=3)
    assert out.tokens.shape[0] == 6 and out.lengths.shape == (6,)
    assert len({tuple(out.tokens[i].flatten().tolist()) for i in range(3)}) == 3
    # each n-best row decodes its own prompt: greedy n-best rows equal the greedy 1-best of that prompt
    g_cfg = config(toy_lm, num_samples=2, sampling=SamplingConfig(greedy=True))
    g1 = run(toy_lm, prompt, config(toy_lm, sampling=SamplingConfig(greedy=True)))
    g2 = run(toy_lm, prompt, g_cfg)
    assert torch.equal(g2.tokens[0::2], g1.tokens) and torch.equal(g2.tokens[1::2], g1.tokens)


def test_left_padded_prompt_batch_matches_single_prompts(toy_lm):
    long, short = prompt_tokens(1, 6, toy_lm, seed=1), prompt_tokens(1, 3, toy_lm, seed=2)
    emb = torch.zeros(2, 6, toy_lm.decoder.hidden_size)
    emb[0] = toy_lm.embed_fn(long)[0]
    emb[1, 3:] = toy_lm.embed_fn(short)[0]
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, :3] = False
    cfg = config(toy_lm, sampling=SamplingConfig(greedy=True))
    both = generate(toy_lm.decoder, emb, toy_lm.embed_fn, toy_lm.logits_fn, cfg, prompt_mask=mask)
    alone = run(toy_lm, short, cfg)
    n = alone.tokens.shape[1]
    assert torch.equal(both.tokens[1, :n], alone.tokens[0])


def test_bad_inputs_give_clear_errors(toy_lm):
    emb = toy_lm.embed_fn(prompt_tokens(1, 4, toy_lm))
    cfg = config(toy_lm)
    with pytest.raises(GenerationError, match="empty"):
        generate(toy_lm.decoder, emb[:, :0], toy_lm.embed_fn, toy_lm.logits_fn, cfg)
    with pytest.raises(GenerationError, match="exceeds the decoder's maximum of 256"):
        generate(toy_lm.decoder, emb, toy_lm.embed_fn, toy_lm.logits_fn, config(toy_lm, max_steps=300))
    with pytest.raises(GenerationError, match="width"):
        generate(toy_lm.decoder, emb[:, :, :10], toy_lm.embed_fn, toy_lm.logits_fn, cfg)
    right_padded = torch.tensor([[True, True, True, False]])
    with pytest.raises(GenerationError, match="LEFT-padded"):
        generate(toy_lm.decoder, emb, toy_lm.embed_fn, toy_lm.logits_fn, cfg, prompt_mask=right_padded)
    with pytest.raises(GenerationError, match="unconditional prompt"):
        generate(toy_lm.decoder, emb, toy_lm.embed_fn, toy_lm.logits_fn, config(toy_lm, guidance_scale=3.0))
    with pytest.raises(GenerationError, match="delays"):
        config(toy_lm, delays=[1, 2, 3])
    with pytest.raises(GenerationError, match="stop ids"):
        config(toy_lm, stop_ids=[BOS])
    with pytest.raises(GenerationError, match="max_steps"):
        config(toy_lm, max_steps=1)


def test_a_stop_sampled_at_the_last_allowed_step_is_kept(toy_lm):
    K = toy_lm.K
    cfg = config(toy_lm, max_steps=9)
    last = 9 - (K - 1)

    def eot_at_last(hidden, calls={"t": 0}):
        logits = toy_lm.logits_fn(hidden).clone()
        logits[:, 0, EOS] = logits[:, 0, EOT] = -1e4
        if calls["t"] == last:
            logits[0, 0, EOT] = 1e4  # row 0 samples <eot> itself; row 1 is cut
        calls["t"] += 1
        return logits

    out = generate(toy_lm.decoder, toy_lm.embed_fn(prompt_tokens(2, 3, toy_lm)), toy_lm.embed_fn, eot_at_last, cfg)
    assert out.finished.tolist() == [True, False]
    assert out.tokens[0, last, 0].item() == EOT and out.tokens[1, last, 0].item() == EOS
    assert out.lengths.tolist() == [9, 9]
