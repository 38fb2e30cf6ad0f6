"""Residual VQ: data initialisation, EMA updates, dead-code restarts, quantizer dropout."""

from __future__ import annotations

import torch

from ualm_tk.codec.rvq import EMAVectorQuantizer, ResidualVectorQuantizer


def _clusters(n: int = 2000, d: int = 4, k: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(k, d, generator=g)
    return centres[torch.randint(0, k, (n,), generator=g)] + 0.1 * torch.randn(n, d, generator=g)  # [n, D]


def test_codebooks_start_from_data_by_kmeans():
    x = _clusters()
    rvq = ResidualVectorQuantizer(dim=4, num_codebooks=1, codebook_size=8, dropout_prob=0.0).train()
    assert not bool(rvq.layers[0].initted)
    z = x.t().reshape(1, 4, -1)  # [B=1, D, T]
    z_q, codes, commit = rvq(z)
    assert bool(rvq.layers[0].initted)
    # 8 well-separated clusters, 8 entries: k-means puts one entry on each, error ~ the noise
    assert float(((z_q - z) ** 2).mean()) < 0.05
    assert codes.unique().numel() == 8


def test_ema_moves_entries_toward_assigned_data():
    vq = EMAVectorQuantizer(dim=2, codebook_size=2, decay=0.5, dead_ratio=0.0)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.ema_embed_sum.copy_(vq.codebook)
    vq.ema_cluster_size.fill_(1.0)
    vq.initted.fill_(True)
    x = torch.tensor([[1.0, 1.0]] * 4 + [[9.0, 9.0]] * 4)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        vq.ema_update(x, vq.quantize(x), g)
    assert torch.allclose(vq.codebook, torch.tensor([[1.0, 1.0], [9.0, 9.0]]), atol=0.05)


def test_dead_codes_are_restarted_from_the_batch():
    vq = EMAVectorQuantizer(dim=2, codebook_size=4, decay=0.5, dead_ratio=0.05)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]]))
    vq.ema_embed_sum.copy_(vq.codebook)
    vq.ema_cluster_size.fill_(1.0)
    vq.initted.fill_(True)
    x = 0.1 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))  # all near entry 0
    g = torch.Generator().manual_seed(0)
    restarted = sum(vq.ema_update(x, vq.quantize(x), g) for _ in range(10))
    assert restarted >= 3
    # the far-away entries now sit on data: more than one entry is used
    assert vq.quantize(x).unique().numel() > 1
    assert float(vq.codebook.abs().max()) < 1.0


def test_quantizer_dropout_uses_fewer_codebooks_and_more_codebooks_reduce_error():
    x = torch.randn(1, 8, 1500, generator=torch.Generator().manual_seed(0))
    rvq = ResidualVectorQuantizer(dim=8, num_codebooks=4, codebook_size=32, dropout_prob=1.0, seed=3).train()
    used = {rvq(x)[1].shape[1] for _ in range(30)}
    assert len(used) > 1 and min(used) >= 1 and max(used) <= 4
    rvq.dropout_prob = 0.0
    for _ in range(5):
        rvq(x)  # all codebooks initialised and updated
    rvq.eval()
    codes = rvq.encode(x)
    assert codes.shape == (1, 4, 1500)
    errors = [float(((rvq.decode(codes[:, :k]) - x) ** 2).mean()) for k in range(1, 5)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.7 * errors[0]


def test_eval_mode_changes_nothing():
    x = torch.randn(1, 4, 300)
    rvq = ResidualVectorQuantizer(dim=4, num_codebooks=2, codebook_size=8).train()
    rvq(x, n_q=2)
    rvq.eval()
    before = {k: v.clone() for k, v in rvq.state_dict().items()}
    rvq(x)
    rvq.encode(x)
    assert all(torch.equal(before[k], v) for k, v in rvq.state_dict().items())
