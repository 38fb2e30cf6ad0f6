"""Build (or load the cached build of) the few-row GEMV kernel of decoding and check one product.

    python -m ualm_tk.bin.build_gemv_kernel [--verbose]

Exit status 1, with the reason, when it cannot be built: decoding then multiplies through torch's
``F.linear`` (about half the speed at batch 1 on 2 CPU cores). See :mod:`ualm_tk.lm.gemv_kernel`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verbose", action="store_true", help="show the compiler's command lines")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from ualm_tk.lm import gemv_kernel

    t0 = time.perf_counter()
    try:
        fn = gemv_kernel.build(verbose=args.verbose)
    except Exception as e:
        print(f"few-row GEMV kernel: could not be built ({type(e).__name__}: {e}); decoding will use torch's "
              f"F.linear", file=sys.stderr)
        sys.exit(1)
    x, w = torch.randn(2, 96), torch.randn(40, 96)
    err = (fn(x, w) - x @ w.t()).abs().max().item()
    if not err < 1e-4:
        print(f"few-row GEMV kernel: wrong result (max error {err:.2e} against torch)", file=sys.stderr)
        sys.exit(1)
    print(f"few-row GEMV kernel {gemv_kernel.extension_name()}: ready in {time.perf_counter() - t0:.1f} s "
          f"(max error against torch {err:.1e})")


if __name__ == "__main__":
    main()
