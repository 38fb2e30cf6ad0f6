"""FewRowLinear: same results, parameters and gradients as nn.Linear for every input size."""
import pytest
import torch

from ualm_tk.lm import FewRowLinear


@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 3), (4, 2), (8, 1), (3, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_nn_linear(shape, bias):
    torch.manual_seed(0)
    ref = torch.nn.Linear(48, 80, bias=bias)
    few = FewRowLinear(48, 80, bias=bias)
    few.load_state_dict(ref.state_dict())
    assert set(few.state_dict()) == set(ref.state_dict())
    x = torch.randn(*shape, 48, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y = ref(x), few(x2)
    assert y.shape == y_ref.shape == (*shape, 80)
    assert torch.allclose(y, y_ref, atol=1e-5)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-4)
    assert torch.allclose(ref.weight.grad, few.weight.grad, atol=1e-4)
