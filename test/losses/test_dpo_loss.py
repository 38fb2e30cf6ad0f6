"""The DPO loss as a pure function: closed-form values, gradient directions, statistics, bad input."""
import math

import pytest
import torch

from ualm_tk.losses.dpo import dpo_loss


def test_policy_equal_to_reference_gives_log2():
    lp = torch.tensor([-12.0, -3.5, -40.0])
    lr = torch.tensor([-11.0, -9.0, -1.0])
    out = dpo_loss(lp, lr, lp.clone(), lr.clone(), beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out.reward_margin.item() == 0 and out.reward_accuracy.item() == 0


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, 2.0])
def test_beta_scaling_matches_closed_form(beta):
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -5.0]), torch.tensor([-11.0, -2.0])
    # per pair Δ = (πc - rc) - (πr - rr): (1) - (-1) = 2 for both pairs
    deltas = [(-10 + 11) - (-12 + 11), (-4 + 5) - (-3 + 2)]
    assert deltas == [2.0, 2.0]
    expect = sum(math.log1p(math.exp(-beta * d)) for d in deltas) / 2
    out = dpo_loss(pc, pr, rc, rr, beta=beta)
    assert out.loss.item() == pytest.approx(expect, rel=1e-6)
    assert out.reward_chosen.item() == pytest.approx(beta * 1.0)
    assert out.reward_rejected.item() == pytest.approx(beta * -1.0)
    assert out.reward_margin.item() == pytest.approx(2 * beta)
    assert out.reward_accuracy.item() == 1.0


def test_mixed_pairs_accuracy_and_margin():
    pc, pr = torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])
    rc, rr = torch.tensor([-1.0, 3.0]), torch.tensor([0.0, 0.0])  # Δ = +1, -3
    out = dpo_loss(pc, pr, rc, rr, beta=1.0)
    assert out.reward_accuracy.item() == 0.5
    assert out.reward_margin.item() == pytest.approx(-1.0)
    assert out.loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(3))) / 2, rel=1e-6)


def test_gradient_pushes_chosen_up_and_rejected_down():
    beta = 0.1
    pc = torch.tensor([-5.0, -7.0], requires_grad=True)
    pr = torch.tensor([-6.0, -2.0], requires_grad=True)
    rc, rr = torch.tensor([-5.5, -7.0]), torch.tensor([-6.0, -2.5])
    out = dpo_loss(pc, pr, rc, rr, beta=beta)
    out.loss.backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()  # descent raises chosen, lowers rejected
    # closed form: dL/dπc_i = -β σ(-h_i) / B
    h = beta * ((pc - rc) - (pr - rr)).detach()
    assert torch.allclose(pc.grad, -beta * torch.sigmoid(-h) / 2, atol=1e-7)
    assert torch.allclose(pr.grad, beta * torch.sigmoid(-h) / 2, atol=1e-7)
    # one gradient step lowers the loss
    with torch.no_grad():
        pc2, pr2 = pc - 1.0 * pc.grad, pr - 1.0 * pr.grad
    assert dpo_loss(pc2, pr2, rc, rr, beta=beta).loss < out.loss


def test_bad_input_is_rejected():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="four \\[B\\] tensors"):
        dpo_loss(a, a, a, torch.zeros(2))
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(a, a, a, a, beta=0.0)
    with pytest.raises(ValueError, match="no pairs"):
        e = torch.zeros(0)
        dpo_loss(e, e, e, e)
