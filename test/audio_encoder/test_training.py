"""Our encoder + adapter train jointly on CPU: a frame-level toy task (where is the tone?) is learnt."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audio_encoder_testlib import SR
from ualm_tk.audio_encoder import AudioAdapter, build_audio_encoder

SPF = SR // 25  # samples per encoder frame


def toy_batch(rng, n=4):
    """Clips of 12..25 frames with a tone over a random frame span, faint noise elsewhere.

    Returns ``wav [n,1,L]``, ``lengths [n]`` and per-frame labels ``[n, T']`` (1 = tone)."""
    frames = rng.integers(12, 26, size=n)
    L = int(frames.max()) * SPF
    wav = torch.zeros(n, 1, L)
    labels = torch.zeros(n, int(frames.max()))
    for i, f in enumerate(frames):
        x = 0.003 * rng.standard_normal(f * SPF)
        a = int(rng.integers(0, f - 6))
        b = int(rng.integers(a + 3, f + 1))
        t = np.arange((b - a) * SPF) / SR
        x[a * SPF : b * SPF] += 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t)
        wav[i, 0, : f * SPF] = torch.from_numpy(x.astype(np.float32))
        labels[i, a:b] = 1.0
    return wav, torch.from_numpy(frames * SPF), labels


@pytest.fixture
def one_thread():
    """A 0.1 M-parameter model gains nothing from intra-op threads; on a busy 2-core machine they cost 10x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_encoder_and_adapter_learn_a_frame_level_task(one_thread):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    enc = build_audio_encoder("mel_transformer", {"size": "tiny", "dropout": 0.0})
    adapter = AudioAdapter(enc.output_size, 32, num_layers=2)
    head = torch.nn.Linear(32, 1)
    params = list(enc.parameters()) + list(adapter.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    before = {k: v.clone() for k, v in enc.state_dict().items() if v.is_floating_point()}
    held_out = toy_batch(np.random.default_rng(123), n=16)

    def evaluate():
        wav, lengths, labels = held_out
        with torch.no_grad():
            feats, n = enc.eval()(wav, lengths)
            logits = head(adapter(feats))[..., 0]
        valid = torch.arange(logits.shape[1])[None] < n[:, None]
        loss = F.binary_cross_entropy_with_logits(logits[valid], labels[valid])
        acc = ((logits[valid] > 0).float() == labels[valid]).float().mean()
        return float(loss), float(acc)

    loss0, acc0 = evaluate()
    enc.train()
    for _ in range(30):
        wav, lengths, labels = toy_batch(rng)
        feats, n = enc(wav, lengths)
        logits = head(adapter(feats))[..., 0]
        valid = torch.arange(logits.shape[1])[None] < n[:, None]
        loss = F.binary_cross_entropy_with_logits(logits[valid], labels[valid])
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss1, acc1 = evaluate()
    assert loss1 < 0.6 * loss0, (loss0, loss1)
    assert acc1 > 0.85 and acc1 > acc0 + 0.2, (acc0, acc1)
    changed = [k for k, v in enc.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any(k.startswith("blocks.") for k in changed) and any(k.startswith("conv1.") for k in changed)
