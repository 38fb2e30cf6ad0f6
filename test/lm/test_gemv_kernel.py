"""The few-row GEMV kernel of incremental decoding: exact products for every row count and shape
(tails of the vector loop included), clear errors, and FewRowLinear's choice of path."""
import logging

import pytest
import torch

from ualm_tk.lm import FewRowLinear, gemv_kernel
from ualm_tk.lm import linear as linear_mod


@pytest.fixture(scope="module")
def kernel():
    fn = gemv_kernel.build()  # compiles on a fresh machine (~30 s), else loads the cached build
    return fn


@pytest.mark.parametrize("rows", range(1, gemv_kernel.MAX_ROWS + 1))
@pytest.mark.parametrize("n_in,n_out", [(1, 1), (31, 5), (33, 63), (96, 200), (1027, 130)])
def test_kernel_equals_the_matrix_product(kernel, rows, n_in, n_out):
    g = torch.Generator().manual_seed(rows * 1000 + n_in)
    x, w = torch.randn(rows, n_in, generator=g), torch.randn(n_out, n_in, generator=g)
    y = kernel(x, w)
    assert y.shape == (rows, n_out) and y.dtype == torch.float32
    ref = (x.double() @ w.double().t()).float()
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5 * n_in ** 0.5)


def test_kernel_takes_non_contiguous_inputs(kernel):
    x = torch.randn(64, 3).t()  # [3, 64], a transposed view
    w = torch.randn(64, 40).t()  # [40, 64]
    assert not x.is_contiguous() and not w.is_contiguous()
    assert torch.allclose(kernel(x, w), x @ w.t(), atol=1e-5)


@pytest.mark.parametrize("x,w,msg", [
    (torch.randn(1, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64), "float32 only"),
    (torch.randn(9, 8), torch.randn(4, 8), "1..8 rows, got 9"),
    (torch.randn(2, 8), torch.randn(4, 7), "x has 8 features, w 7"),
    (torch.randn(8), torch.randn(4, 8), r"x \[R, in\] and w \[out, in\] expected"),
])
def test_kernel_rejects_what_it_cannot_compute(kernel, x, w, msg):
    with pytest.raises(RuntimeError, match=msg):
        kernel(x, w)


def _counting(monkeypatch):
    calls = []
    real = gemv_kernel.few_row_gemv_kernel()
    assert real is not None, gemv_kernel._state.get("error")

    def counted(x, w):
        calls.append(x.shape[0])
        return real(x, w)

    monkeypatch.setattr(linear_mod, "few_row_gemv_kernel", lambda: counted)
    return calls


@pytest.mark.parametrize("bias", [True, False])
def test_few_row_linear_decodes_through_the_kernel_and_trains_through_torch(monkeypatch, bias):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    ref = torch.nn.Linear(40, 24, bias=bias)
    few = FewRowLinear(40, 24, bias=bias)
    few.load_state_dict(ref.state_dict())
    for shape in [(1, 1, 40), (2, 1, 40), (8, 40), (3, 3, 40)]:  # 1, 2, 8 rows: kernel; 9 rows: F.linear
        x = torch.randn(*shape)
        with torch.no_grad():
            assert torch.allclose(few(x), ref(x), atol=1e-5)
    assert calls == [1, 2, 8]
    x = torch.randn(2, 1, 40, requires_grad=True)
    few(x).sum().backward()  # autograd: never the kernel (it has no backward)
    assert calls == [1, 2, 8] and few.weight.grad is not None
    few_bf16 = FewRowLinear(40, 24, bias=bias).to(torch.bfloat16)  # another dtype: torch's product
    with torch.no_grad():
        x = torch.randn(1, 40, dtype=torch.bfloat16)
        assert torch.allclose(few_bf16(x).float(), torch.nn.functional.linear(x, few_bf16.weight, few_bf16.bias).float())
    assert calls == [1, 2, 8]


def test_switched_off_kernel_warns_once_and_decoding_keeps_torch(monkeypatch, caplog):
    monkeypatch.setenv(gemv_kernel.ENV_SWITCH, "0")
    gemv_kernel.reset()
    try:
        few = FewRowLinear(16, 8)
        x = torch.randn(1, 16)
        with caplog.at_level(logging.WARNING, logger="ualm_tk.lm.gemv_kernel"), torch.no_grad():
            y1, y2 = few(x), few(x)
        assert torch.allclose(y1, torch.nn.functional.linear(x, few.weight, few.bias)) and torch.equal(y1, y2)
        warnings = [r for r in caplog.records if "kernel not used (UALM_TK_GEMV=0)" in r.getMessage()]
        assert len(warnings) == 1
        assert gemv_kernel.few_row_gemv_kernel() is None
    finally:
        monkeypatch.delenv(gemv_kernel.ENV_SWITCH)
        gemv_kernel.reset()
    assert gemv_kernel.few_row_gemv_kernel() is not None


def test_extension_name_changes_with_the_cpu_flags(monkeypatch):
    a = gemv_kernel.extension_name()
    monkeypatch.setattr(gemv_kernel, "_cpu_flags", lambda: "sse2 only")
    assert gemv_kernel.extension_name() != a and a.startswith("ualm_few_row_gemv_")
