"""Sequence log-probs: the LM loss's masked sum, padding-invariant, stream weights as in the loss."""
import pytest
import torch

from ualm_tk.data.lm_dataset import LMDataset, TaskSource, collate
from ualm_tk.dpo.logprob import sequence_logprobs
from ualm_tk.lm import build_decoder
from ualm_tk.models import ModelInputError, UALMModel
from ualm_tk.patterns import build_pattern


def make_model(layout, seed=0):
    torch.manual_seed(seed)
    dec = build_decoder("transformer", dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1))
    return UALMModel(layout=layout, decoder=dec, pattern=build_pattern("delay")).eval()


def batch_of(c, items):
    ds = LMDataset([TaskSource(str(c["data"]["caption_to_audio"]), "caption_to_audio")], c["layout"],
                   build_pattern("delay"), train=False)
    return collate([ds[(i, 0)] for i in items])[1]


def test_logprob_is_minus_the_masked_ce_sum(dpo_corpus):
    model = make_model(dpo_corpus["layout"])
    b = batch_of(dpo_corpus, [0])
    with torch.no_grad():
        loss, _, _ = model(**b)
        s = sequence_logprobs(model, b["tokens"], b["loss_mask"], b["lengths"])
    w = b["loss_mask"][:, 1:].sum()
    assert s.logp.shape == (1,) and s.weight.item() == pytest.approx(w.item())
    assert s.logp.item() == pytest.approx(-(loss * w).item(), rel=1e-5)
    assert s.logp.item() < 0


def test_padding_and_batch_neighbours_do_not_change_a_row(dpo_corpus):
    model = make_model(dpo_corpus["layout"])
    c = dpo_corpus
    # lengths in the corpus differ (clip lengths vary), so row 0 gets padded in the pair batch
    alone = batch_of(c, [0])
    pair = batch_of(c, [0, 4])
    assert pair["tokens"].shape[1] > alone["tokens"].shape[1]
    with torch.no_grad():
        a = sequence_logprobs(model, alone["tokens"], alone["loss_mask"], alone["lengths"]).logp
        p = sequence_logprobs(model, pair["tokens"], pair["loss_mask"], pair["lengths"]).logp
    assert torch.allclose(a[0], p[0], atol=1e-4)


def test_streams_weighted_like_the_lm_loss(dpo_corpus):
    model = make_model(dpo_corpus["layout"])
    b = batch_of(dpo_corpus, [1])
    m = b["loss_mask"]
    K = m.shape[2]
    with torch.no_grad():
        full = sequence_logprobs(model, b["tokens"], m, b["lengths"])
        only0 = m.clone()
        only0[..., 1:] = 0
        s0 = sequence_logprobs(model, b["tokens"], only0, b["lengths"])
        unit = (m > 0).float()  # every stream weighted 1 instead of 1/K
        s1 = sequence_logprobs(model, b["tokens"], unit, b["lengths"])
    # audio positions carry 1/K per stream: the audio part of the unit-weighted sum is K times larger
    audio_part = full.logp - s0.logp
    unit_audio = s1.logp - sequence_logprobs(model, b["tokens"], (only0 > 0).float(), b["lengths"]).logp.detach()
    assert torch.allclose(unit_audio, K * audio_part, rtol=1e-4)
    # the prompt (caption) is not scored: mask 0 on the user segment
    ex = b["tokens"][0]
    assert m[0, :5].sum() == 0 and ex.shape[0] == m.shape[1]


def test_rows_without_loss_positions_are_an_error(dpo_corpus):
    model = make_model(dpo_corpus["layout"])
    b = batch_of(dpo_corpus, [0])
    with pytest.raises(ModelInputError, match="row 0 has no position with loss"):
        sequence_logprobs(model, b["tokens"], torch.zeros_like(b["loss_mask"]), b["lengths"])
