#!/usr/bin/env python
"""Decode speed of the incremental inference core against a naive loop and HF ``generate``.

For each size (``mini``, ``200m`` presets of :class:`ualm_tk.lm.TransformerDecoder`) with a
single-stream embedding + head of ``--vocab`` ids (fp32, ``--threads`` intra-op threads):

* ours   : :func:`ualm_tk.inference.generate` (prefill once, static KV cache, top-k 20 / T 0.8),
           at batch 1 and with CFG (λ = 3: conditional + unconditional row in one batch of 2);
* torch  : the same loop with the few-row GEMV kernel switched off (``FewRowLinear`` multiplies
           through torch's ``F.linear`` / ``W @ x^T``, MKL), i.e. what the kernel buys;
* naive  : the same model and sampling, recomputing the whole prefix every step (no cache);
* HF     : ``Qwen2ForCausalLM.generate`` (random weights, same width/depth/heads/MLP/vocab,
           sampling top-k 20 / T 0.8) at batch 1 and 2.

Prints steps/s, two memory-bandwidth bounds on the fp32 bytes of the weights read per step (decoder +
head; the embedding lookup reads one row): ``read`` — the rate at which torch's own ``sum`` streams
those same weight matrices, one after another as a step reads them, measured in this run (the bound
this machine actually allows) — and ``nominal`` — ``--bandwidth_gbs`` (ENVIRONMENT.md's ~25 GB/s),
the ratios, then a torch.profiler summary of where one decode step's time goes.

    python benchmarks/decode_speed.py            # full run (a few minutes on 2 cores)
    python benchmarks/decode_speed.py --quick    # mini only, fewer steps, no profile of 200m
    python benchmarks/decode_speed.py --profile  # only the profile: where one batch-1 decode step's time goes
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time
from typing import Callable, Dict, List

import torch

from ualm_tk.inference import DecodeConfig, SamplingConfig, generate, sample_tokens
from ualm_tk.lm import PRESETS, FewRowLinear, TransformerDecoder, gemv_kernel

logger = logging.getLogger("decode_speed")

PAD, STOP = 0, 1  # the stop id's head row is zeroed so it never reaches the top-k of random weights


class SingleStreamLM(torch.nn.Module):
    """Embedding ``[V, D]`` + decoder + head ``[V, D]``; K = 1 stream, like a text LM."""

    def __init__(self, decoder: TransformerDecoder, vocab: int) -> None:
        super().__init__()
        self.decoder = decoder
        D = decoder.hidden_size
        self.embed = torch.nn.Embedding(vocab, D)
        self.head = FewRowLinear(D, vocab, bias=False)  # the few-row kernel choice, as in the decoder
        torch.nn.init.normal_(self.head.weight, std=0.02)
        with torch.no_grad():
            self.head.weight[STOP].zero_()

    def embed_fn(self, tokens: torch.Tensor) -> torch.Tensor:  # [N, S, 1] -> [N, S, D]
        return self.embed(tokens[..., 0])

    def logits_fn(self, hidden: torch.Tensor) -> torch.Tensor:  # [N, 1, D] -> [N, 1, V]
        return self.head(hidden)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="mini,200m", help="comma-separated presets of TransformerDecoder")
    p.add_argument("--vocab_mini", type=int, default=4096, help="vocabulary of the mini model (UALM mini: ~4k)")
    p.add_argument("--vocab_200m", type=int, default=32000)
    p.add_argument("--prompt_len", type=int, default=16)
    p.add_argument("--steps", type=int, default=200, help="decode steps per timed run")
    p.add_argument("--naive_steps", type=int, default=24, help="steps for the naive recompute loop (it is slow)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (best is reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bandwidth_gbs", type=float, default=25.0, help="DRAM bandwidth in GB/s for the bound")
    p.add_argument("--skip_hf", action="store_true")
    p.add_argument("--no_profile", action="store_true")
    p.add_argument("--quick", action="store_true", help="mini only, 60 steps, 1 repeat")
    p.add_argument("--profile", action="store_true",
                   help="profile only: torch.profiler table (top ops by self CPU time) of the batch-1 decode loop "
                        "of --sizes (default here: mini), no timing comparisons")
    p.add_argument("--profile_rows", type=int, default=15, help="ops listed by --profile")
    p.add_argument("--profile_steps", type=int, default=50, help="decode steps profiled by --profile")
    return p


def profile_only(args) -> None:
    """``--profile``: per size, the step breakdown and the profiler table of the batch-1 decode loop."""
    for size in args.sizes.split(","):
        vocab = args.vocab_mini if size == "mini" else args.vocab_200m
        dec = TransformerDecoder.from_preset(size, max_positions=args.prompt_len + args.profile_steps + 8).eval()
        lm = SingleStreamLM(dec, vocab).eval()
        prompt = torch.randint(2, vocab, (1, args.prompt_len, 1))
        n_read = dec.num_parameters() + lm.head.weight.numel()
        br = step_breakdown(lm, prompt, args.profile_steps)
        table = profile_steps(lm, prompt, args.profile_steps, rows=args.profile_rows)
        print(f"\nProfile, {size} ({n_read / 1e6:.1f} M parameters read per step, vocab {vocab}), batch 1, fp32, "
              f"{args.threads} threads, {args.profile_steps} decode steps after a {args.prompt_len}-token prefill; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"per step: decoder {br['decoder_ms']:.2f} ms, head + sampling {br['head_sample_ms']:.2f} ms "
              f"(timed separately, outside the profiler)")
        print(f"top ops by self CPU time (torch.profiler):\n{table}")


def weights_read_per_step(lm: SingleStreamLM) -> List[torch.Tensor]:
    """The weight matrices a batch-1 decode step streams: every decoder matrix/vector and the head."""
    return [p for p in lm.decoder.parameters()] + [lm.head.weight]


def measured_read_gbs(weights: List[torch.Tensor], repeats: int) -> float:
    """GB/s at which torch's ``sum`` reads these tensors one after another (best of ``repeats``):
    the pure-read rate of this machine for the sizes a decode step reads, measured now."""
    n_bytes = sum(w.numel() * w.element_size() for w in weights)
    for w in weights:
        w.sum()
    best = float("inf")
    for _ in range(max(repeats, 3)):
        t0 = time.perf_counter()
        for w in weights:
            w.sum()
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best / 1e9


def with_torch_linear(fn: Callable[[], int]) -> Callable[[], int]:
    """``fn`` run with the few-row kernel switched off (FewRowLinear falls back to torch)."""
    def run() -> int:
        with gemv_kernel.switched_off():
            return fn()
    return run


def interleaved_best(fns: Dict[str, Callable[[], int]], repeats: int) -> Dict[str, float]:
    """Best steps/s of each contender; runs alternate (a, b, c, a, b, c, ...) so that load
    changes on a shared machine hit every contender alike. Each ``fn`` returns its step count."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: 0.0 for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            steps = fn()
            best[name] = max(best[name], steps / (time.perf_counter() - t0))
    return best


def decode_config(vocab: int, steps: int, guidance: float | None) -> DecodeConfig:
    return DecodeConfig(
        allowed=torch.ones(1, vocab, dtype=torch.bool), pad_id=PAD, stop_ids=[STOP], delays=[0], max_steps=steps,
        sampling=SamplingConfig(top_k=20, temperature=0.8), guidance_scale=guidance,
    )


def run_ours(lm: SingleStreamLM, prompt: torch.Tensor, steps: int, cfg_rows: bool, seed: int = 0) -> int:
    vocab = lm.head.out_features
    emb = lm.embed_fn(prompt)
    uncond = lm.embed_fn(torch.full_like(prompt, PAD)) if cfg_rows else None
    out = generate(
        lm.decoder, emb, lm.embed_fn, lm.logits_fn, decode_config(vocab, steps, 3.0 if cfg_rows else None),
        uncond_prompt_embeds=uncond, generator=torch.Generator().manual_seed(seed),
    )
    if out.finished.any():
        raise RuntimeError("the stop id was sampled; the timing would be short")
    return out.tokens.shape[1]


@torch.no_grad()
def run_naive(lm: SingleStreamLM, prompt: torch.Tensor, steps: int, cfg_rows: bool, seed: int = 0) -> int:
    """Recompute the whole prefix every step (no cache); same sampling and CFG arithmetic."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.cat([prompt, torch.full_like(prompt, PAD)]) if cfg_rows else prompt  # [N, S, 1]
    config = SamplingConfig(top_k=20, temperature=0.8)
    for _ in range(steps):
        hidden, _ = lm.decoder(lm.embed_fn(seq))
        logits = lm.logits_fn(hidden[:, -1:])  # [N, 1, V]
        if cfg_rows:
            cond, uncond = logits.chunk(2)
            logits = 3.0 * cond - 2.0 * uncond
        tok = sample_tokens(logits, config, g)  # [R, 1]
        if cfg_rows:
            tok = torch.cat([tok, tok])
        seq = torch.cat([seq, tok[:, None, :]], dim=1)
    return steps


def build_hf(preset: Dict[str, int], vocab: int, max_pos: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=preset["hidden_size"], intermediate_size=preset["intermediate_size"],
        num_hidden_layers=preset["num_layers"], num_attention_heads=preset["num_heads"],
        num_key_value_heads=preset["num_kv_heads"], max_position_embeddings=max_pos, tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(cfg).eval()


def run_hf(model, ids: torch.Tensor, steps: int) -> int:
    out = model.generate(
        ids, max_new_tokens=steps, min_new_tokens=steps, do_sample=True, top_k=20, temperature=0.8,
        pad_token_id=PAD, eos_token_id=None,
    )
    return out.shape[1] - ids.shape[1]


def profile_steps(lm: SingleStreamLM, prompt: torch.Tensor, steps: int, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    run_ours(lm, prompt, steps, False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_ours(lm, prompt, steps, False)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def step_breakdown(lm: SingleStreamLM, prompt: torch.Tensor, steps: int) -> Dict[str, float]:
    """Wall ms per step spent in the decoder forward vs head + sampling (timed separately)."""
    dec = lm.decoder
    cache = dec.init_cache(1, prompt.shape[1] + steps + 1)
    g = torch.Generator().manual_seed(0)
    cfg = SamplingConfig(top_k=20, temperature=0.8)
    with torch.no_grad():
        h, _ = dec(lm.embed_fn(prompt), cache=cache)
        h = h[:, -1:]
        t_dec = t_head = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            tok = sample_tokens(lm.logits_fn(h), cfg, g)  # [1, 1]
            t1 = time.perf_counter()
            h, _ = dec(lm.embed_fn(tok[:, None, :]), cache=cache)
            t2 = time.perf_counter()
            t_head += t1 - t0
            t_dec += t2 - t1
    return {"decoder_ms": 1e3 * t_dec / steps, "head_sample_ms": 1e3 * t_head / steps}


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.quick:
        args.sizes, args.steps, args.naive_steps, args.repeats = "mini", 60, 15, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.profile:
        if args.sizes == get_parser().get_default("sizes"):
            args.sizes = "mini"
        profile_only(args)
        return
    rows: List[Dict[str, float]] = []
    profiles: Dict[str, str] = {}
    for size in args.sizes.split(","):
        vocab = args.vocab_mini if size == "mini" else args.vocab_200m
        max_pos = args.prompt_len + args.steps + 8
        dec = TransformerDecoder.from_preset(size, max_positions=max_pos).eval()
        lm = SingleStreamLM(dec, vocab).eval()
        prompt = torch.randint(2, vocab, (1, args.prompt_len, 1))
        n_dec = dec.num_parameters()
        n_read = n_dec + lm.head.weight.numel()
        n_total = n_read + lm.embed.weight.numel()
        if gemv_kernel.few_row_gemv_kernel() is None:
            logger.warning("the few-row kernel is unavailable: 'ours' and 'torch' are the same path here")
        read_gbs = measured_read_gbs(weights_read_per_step(lm), args.repeats)
        bound_read = read_gbs * 1e9 / (4 * n_read)  # what this machine's reads allow, measured now
        bound = args.bandwidth_gbs * 1e9 / (4 * n_read)  # weights actually read per step, nominal bandwidth
        row = dict(size=size, params_m=n_total / 1e6, read_m=n_read / 1e6, bound=bound,
                   read_gbs=read_gbs, bound_read=bound_read)
        logger.info("%s: %.1f M parameters (%.1f M read per step); reads stream at %.1f GB/s: bound %.1f steps/s "
                    "(nominal %.0f GB/s: %.1f)", size, n_total / 1e6, n_read / 1e6, read_gbs, bound_read,
                    args.bandwidth_gbs, bound)
        contenders: Dict[str, Callable[[], int]] = {
            "ours_b1": lambda: run_ours(lm, prompt, args.steps, False),
            "ours_cfg": lambda: run_ours(lm, prompt, args.steps, True),
            "torch_b1": with_torch_linear(lambda: run_ours(lm, prompt, args.steps, False)),
            "torch_cfg": with_torch_linear(lambda: run_ours(lm, prompt, args.steps, True)),
        }
        hf = None
        if not args.skip_hf:
            hf = build_hf(PRESETS[size], vocab, max_pos)
            ids = prompt[..., 0]
            contenders["hf_b1"] = lambda: run_hf(hf, ids, args.steps)
            contenders["hf_b2"] = lambda: run_hf(hf, ids.repeat(2, 1), args.steps)
        row.update(interleaved_best(contenders, args.repeats))
        logger.info("%s ours: %.1f steps/s (b1), %.1f (cfg 2 rows); torch path: %.1f, %.1f; HF generate: %s", size,
                    row["ours_b1"], row["ours_cfg"], row["torch_b1"], row["torch_cfg"],
                    "skipped" if hf is None else f"{row['hf_b1']:.1f} (b1), {row['hf_b2']:.1f} (b2)")
        del hf
        row.update(interleaved_best({
            "naive_b1": lambda: run_naive(lm, prompt, args.naive_steps, False),
            "naive_cfg": lambda: run_naive(lm, prompt, args.naive_steps, True),
        }, 1))
        logger.info("%s naive: %.1f steps/s (b1), %.1f (cfg)", size, row["naive_b1"], row["naive_cfg"])
        row.update(step_breakdown(lm, prompt, min(args.steps, 100)))
        if not args.no_profile and (size == "mini" or not args.quick):
            profiles[size] = profile_steps(lm, prompt, min(args.steps, 50))
        rows.append(row)
        del lm, dec

    print(f"\nDecode steps/s, fp32, {args.threads} threads, prompt {args.prompt_len}, {args.steps} steps "
          f"(naive: {args.naive_steps} steps), top-k 20 / T 0.8; best of {args.repeats} interleaved runs; "
          f"load average at the end: {os.getloadavg()[0]:.1f}")
    head = (f"{'size':>5} {'params':>7} {'read':>7} {'GB/s':>5} {'bound':>6} {'nomin':>6} | {'ours b1':>7} "
            f"{'%bound':>6} {'%nomin':>6} {'torch':>6} {'naive':>6} {'HF b1':>6} {'/torch':>6} {'/naive':>6} "
            f"{'/HF':>5} | {'ours cfg2':>9} {'torch':>6} {'naive':>6} {'HF b2':>6} {'/torch':>6} {'/naive':>6} "
            f"{'/HF':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        hf1, hf2 = r.get("hf_b1", float("nan")), r.get("hf_b2", float("nan"))
        print(f"{r['size']:>5} {r['params_m']:>6.1f}M {r['read_m']:>6.1f}M {r['read_gbs']:>5.1f} {r['bound_read']:>6.1f} "
              f"{r['bound']:>6.1f} | {r['ours_b1']:>7.1f} {100 * r['ours_b1'] / r['bound_read']:>5.0f}% "
              f"{100 * r['ours_b1'] / r['bound']:>5.0f}% {r['torch_b1']:>6.1f} {r['naive_b1']:>6.1f} {hf1:>6.1f} "
              f"{r['ours_b1'] / r['torch_b1']:>6.2f} {r['ours_b1'] / r['naive_b1']:>6.1f} {r['ours_b1'] / hf1:>5.2f} | "
              f"{r['ours_cfg']:>9.1f} {r['torch_cfg']:>6.1f} {r['naive_cfg']:>6.1f} {hf2:>6.1f} "
              f"{r['ours_cfg'] / r['torch_cfg']:>6.2f} {r['ours_cfg'] / r['naive_cfg']:>6.1f} {r['ours_cfg'] / hf2:>5.2f}")
    print("read = M fp32 parameters streamed per step (decoder + head); GB/s = rate of torch's sum over those same "
          "weights, measured now; bound = GB/s / bytes per step; nomin = the same with --bandwidth_gbs "
          f"({args.bandwidth_gbs:g} GB/s). torch = our loop with the few-row kernel off (F.linear). cfg2 = one CFG "
          "row pair; HF b2 = HF generate at batch 2.")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")
    print("\nPer decode step at batch 1 (ms): " + "; ".join(
        f"{r['size']}: decoder {r['decoder_ms']:.2f}, head+sampling {r['head_sample_ms']:.2f}" for r in rows))
    for size, table in profiles.items():
        print(f"\nProfile, {size}, batch 1 (torch.profiler, top ops by self CPU time):\n{table}")


if __name__ == "__main__":
    main()
