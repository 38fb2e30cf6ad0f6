"""``nn.Linear`` with faster kernels for the few-row inputs of incremental decoding.

A decode step multiplies every weight by only ``rows = batch`` vectors (1 at batch 1, 2 with CFG),
so its time is the time to read the weights once. Without autograd, 1..8 float32 rows on the CPU go
to the few-row GEMV kernel (:mod:`ualm_tk.lm.gemv_kernel`: weights read once for all rows, output
rows split over the intra-op threads; on 2 cores the products alone run 2.2x ``F.linear`` for the
200 M benchmark model's matrices at one row and 3.3x for the mini model's, whole decode steps 2.0x and
2.3x: ``benchmarks/decode_speed.py``). Otherwise (autograd, another device or dtype, the kernel
unavailable): one row goes to ``F.linear`` (a GEMV); 2..8 rows are computed as ``W @ x^T``, which
reads the weight once for all rows (``F.linear``'s GEMM at 2 rows was measured 2-3x slower than one
row for DRAM-sized weights with MKL). Larger inputs (prefill, training) keep ``F.linear``.
Same parameters and state dict as ``nn.Linear``; results agree to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ualm_tk.lm.gemv_kernel import MAX_ROWS, few_row_gemv_kernel

FEW_ROWS = MAX_ROWS  # 2..FEW_ROWS rows take a few-row path


def _kernel_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """No autograd through this product, float32 CPU tensors."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return x.dtype == weight.dtype == torch.float32 and x.device.type == weight.device.type == "cpu"


class FewRowLinear(torch.nn.Linear):
    """``y = x W^T + b`` for ``x [..., in]``; few-row inputs through the few-row kernel or ``(W @ x^T)^T``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not 1 <= rows <= FEW_ROWS:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(rows, self.in_features)
        kernel = few_row_gemv_kernel() if _kernel_applies(x, self.weight) else None
        if kernel is not None:
            y = kernel(x2, self.weight)  # [rows, out]
        elif rows == 1:
            return F.linear(x, self.weight, self.bias)
        else:
            y = (self.weight @ x2.t()).t()  # [rows, out]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)
