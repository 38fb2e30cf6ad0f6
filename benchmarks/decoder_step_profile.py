#!/usr/bin/env python
"""Where a training step of the LM decoder spends its time on the CPU, and what a causal-only attention would save.

1. Profiles ``--steps`` forward + backward passes of ``TransformerDecoder`` (the mini recipe's sizes by default:
   width 256, 6 layers, 4 heads, 2 KV heads, SwiGLU 768) on random ``[B, S, D]`` inputs with right-padded rows
   (a key-padding mask, as in training) and prints the share of each operator group (matrix products,
   attention kernels, everything else) and the matrix products' achieved GFLOP/s.
2. Times the attention alone (SDPA with GQA, forward + backward) with the training mask (causal AND key padding)
   against ``is_causal=True`` without a mask, for several ``B x S`` shapes. With right padding the real positions
   never attend to padding under a causal mask, so the two give the same outputs at real positions; the ratio is
   what dropping the key-padding mask would save.

    python benchmarks/decoder_step_profile.py
    python benchmarks/decoder_step_profile.py --hidden 512 --layers 8 --shapes 4x512,2x1000
"""

from __future__ import annotations

import argparse
import time
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from ualm_tk.lm.transformer import TransformerDecoder


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv_heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=768)
    p.add_argument("--batch", type=int, default=4, help="rows of the profiled step")
    p.add_argument("--length", type=int, default=512, help="positions per row of the profiled step")
    p.add_argument("--steps", type=int, default=3, help="profiled steps (after 2 untimed)")
    p.add_argument("--shapes", default="4x512,2x1000,8x256", help="B x S shapes of the attention comparison")
    p.add_argument("--threads", type=int, default=2)
    return p


def padded_batch(B: int, S: int, gen: torch.Generator) -> torch.Tensor:
    """Key mask ``[B, S]`` of right-padded rows, the first row full length."""
    lens = torch.randint(S // 2, S + 1, (B,), generator=gen)
    lens[0] = S
    return torch.arange(S)[None, :] < lens[:, None]


def profile_step(a: argparse.Namespace) -> None:
    dec = TransformerDecoder(hidden_size=a.hidden, num_layers=a.layers, num_heads=a.heads,
                             num_kv_heads=a.kv_heads, intermediate_size=a.ffn, max_positions=max(a.length, 2)).train()
    gen = torch.Generator().manual_seed(0)
    B, S, D = a.batch, a.length, a.hidden

    def step() -> None:
        x = torch.randn(B, S, D, generator=gen, requires_grad=True)  # [B,S,D]
        hidden, _ = dec(x, attention_mask=padded_batch(B, S, gen))
        hidden.pow(2).mean().backward()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    total = mm = attn = 0.0
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total  # microseconds
        total += t
        if ev.key in ("aten::mm", "aten::addmm", "aten::bmm"):
            mm += t
        elif "scaled_dot_product" in ev.key:
            attn += t
    head_dim = D // a.heads
    qkv_out = (a.heads + 2 * a.kv_heads) * head_dim
    per_pos = D * qkv_out + a.heads * head_dim * D + D * 2 * a.ffn + a.ffn * D  # multiply-adds per position per layer
    flops = 2 * per_pos * B * S * a.layers * 3 * a.steps  # forward + backward (2x forward)
    print(f"\nDecoder step (width {D}, {a.layers} layers, {a.heads}/{a.kv_heads} heads, SwiGLU {a.ffn}), "
          f"{B} x {S} positions with key padding, forward + backward, {a.steps} steps, {torch.get_num_threads()} threads")
    print(f"{'part':>20} {'share':>7} {'seconds/step':>12}")
    for name, t in (("matrix products", mm), ("attention (SDPA)", attn), ("everything else", total - mm - attn)):
        print(f"{name:>20} {100 * t / total:>6.1f}% {t / 1e6 / a.steps:>12.3f}")
    print(f"matrix products: {flops / (mm / 1e6) / 1e9:.0f} GFLOP/s (linear layers only)")


def attention_time(B: int, S: int, masked: bool, a: argparse.Namespace, reps: int = 5) -> float:
    gen = torch.Generator().manual_seed(1)
    hd = a.hidden // a.heads
    q = torch.randn(B, a.heads, S, hd, generator=gen, requires_grad=True)  # [B,H,S,hd]
    k = torch.randn(B, a.kv_heads, S, hd, generator=gen, requires_grad=True)  # [B,Hkv,S,hd]
    v = torch.randn(B, a.kv_heads, S, hd, generator=gen, requires_grad=True)
    keep = padded_batch(B, S, gen)  # [B,S]
    slot = torch.arange(S)
    causal = slot[None, :] <= slot[:, None]  # [S,S]
    mask = ((causal[None] & keep[:, None, :]) | torch.eye(S, dtype=torch.bool)[None])[:, None]  # [B,1,S,S]
    times: List[float] = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        if masked:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        y.sum().backward()
        if r:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def compare_attention(a: argparse.Namespace) -> None:
    shapes: List[Tuple[int, int]] = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    print(f"\nAttention of one layer, forward + backward ({a.heads} heads, {a.kv_heads} KV heads, head dim "
          f"{a.hidden // a.heads}): training mask (causal and key padding) vs is_causal without a mask")
    print(f"{'B x S':>10} {'masked s':>9} {'causal s':>9} {'masked / causal':>15}")
    for B, S in shapes:
        m, c = attention_time(B, S, True, a), attention_time(B, S, False, a)
        print(f"{f'{B} x {S}':>10} {m:>9.4f} {c:>9.4f} {m / c:>15.2f}")


def main(cmd=None) -> None:
    a = get_parser().parse_args(cmd)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    profile_step(a)
    compare_attention(a)


if __name__ == "__main__":
    main()
