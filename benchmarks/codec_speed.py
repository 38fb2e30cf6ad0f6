#!/usr/bin/env python3
"""Codec speed on CPU: tokenisation (encode) and decode real-time factors, peak memory.

    python benchmarks/codec_speed.py --codec_dir exp/codec_mini/codec \
        [--dac_config egs2/TEMPLATE/ualm1/conf/codec/dac_16k.yaml] [--threads 2] [--seconds 10]

Measures, in the same run and on the same clip (``--seconds`` of 16 kHz audio: speech-like
harmonic tone + noise, batch 1): the mini codec from ``--codec_dir`` (a random mini codec when
omitted) and ESPnet's DAC built from ``--dac_config`` (random weights: speed does not depend on
them). Each codec runs in its own subprocess so that its peak RSS is its own. Prints a Markdown
table: encode and decode speed as multiples of real time (audio seconds / wall seconds) and peak
resident memory. A figure-printing benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--codec_dir", default=None, help="trained mini codec (component dir)")
    p.add_argument("--dac_config", default=str(Path(__file__).resolve().parents[1]
                                               / "egs2/TEMPLATE/ualm1/conf/codec/dac_16k.yaml"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def _clip(seconds: float, sr: int = 16000):
    import torch

    t = torch.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * torch.sin(2 * math.pi * 0.5 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    x = sum(0.2 / k * torch.sin(k * phase) for k in range(1, 8))
    g = torch.Generator().manual_seed(0)
    return (x + 0.01 * torch.randn(t.shape, generator=g)).float().view(1, 1, -1)  # [1, 1, L]


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the codec_* commands do
    if args.worker == "mini_rvq":
        from ualm_tk.codec import build_codec, load_codec

        codec = load_codec(args.codec_dir) if args.codec_dir else build_codec("mini_rvq").eval()
        label = f"mini_rvq ({'trained' if args.codec_dir else 'random'})"
    else:
        import yaml

        from ualm_tk.codec import build_codec

        conf = yaml.safe_load(Path(args.dac_config).read_text())
        codec = build_codec("espnet_gan", dict(model=conf["codec"], model_conf=conf["codec_conf"])).eval()
        label = f"espnet {conf['codec']} ({Path(args.dac_config).name}, random weights)"
    n_params = sum(p.numel() for p in codec.parameters())
    wav = _clip(args.seconds, codec.sample_rate)
    codes = codec.encode(wav)  # warm-up
    enc, dec = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        codes = codec.encode(wav)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        codec.decode(codes)
        dec.append(time.perf_counter() - t)
    return dict(
        codec=label, params_M=n_params / 1e6, num_codebooks=codec.num_codebooks,
        bitrate_kbps=codec.bitrate / 1000, encode_x_realtime=args.seconds / min(enc),
        decode_x_realtime=args.seconds / min(dec),
        peak_rss_MiB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = []
    for name in ("mini_rvq", "dac"):
        cmd_ = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads),
                "--seconds", str(args.seconds), "--repeats", str(args.repeats), "--dac_config", args.dac_config]
        if args.codec_dir:
            cmd_ += ["--codec_dir", args.codec_dir]
        out = subprocess.run(cmd_, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"benchmark worker {name} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"CPU threads: {args.threads}; clip: {args.seconds} s at 16 kHz, batch 1; best of {args.repeats}\n")
    print("| codec | params (M) | K | kbit/s | encode (x real time) | decode (x real time) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['codec']} | {r['params_M']:.2f} | {r['num_codebooks']} | {r['bitrate_kbps']:.1f} | "
              f"{r['encode_x_realtime']:.1f} | {r['decode_x_realtime']:.1f} | {r['peak_rss_MiB']:.0f} |")


if __name__ == "__main__":
    main()
