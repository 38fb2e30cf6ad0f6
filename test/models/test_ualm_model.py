"""The UALM model and its data pipeline on a tiny real corpus (wavs, kaldiio codes, BPE, data.json)."""
import numpy as np
import pytest
import soundfile as sf
import torch

from ualm_tk.audio_encoder import build_audio_encoder
from ualm_tk.data.lm_batching import bucket_batches, padding_share
from ualm_tk.data.lm_dataset import LMDataset, LMIterFactory, TaskSource, collate
from ualm_tk.data.task_data import TaskData
from ualm_tk.data.task_templates import ExampleTooLong, TaskDataError
from ualm_tk.lm import build_decoder
from ualm_tk.models import ModelInputError, UALMModel, model_choices
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens import specials as sp


def make_model(layout, audio=True, seed=0, **model_conf):
    torch.manual_seed(seed)
    dec = build_decoder("transformer", dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2))
    enc = build_audio_encoder("mel_transformer", dict(size="tiny", dropout=0.0)) if audio else None
    return model_choices.get_class("ualm")(layout=layout, decoder=dec, pattern=build_pattern("delay"), audio_encoder=enc,
                                               **model_conf)


def dataset(c, tasks=None, factors=None, **kw):
    tasks = tasks or list(c["data"])
    factors = factors or {}
    src = [TaskSource(str(c["data"][t]), t, factors.get(t, 1.0)) for t in tasks]
    return LMDataset(src, c["layout"], build_pattern("delay"), **kw)


def test_registry_builds_ualm(lm_corpus):
    assert model_choices.get_class("ualm") is UALMModel
    with pytest.raises(ValueError, match="ualm"):
        model_choices.get_class("nonexistent")


def test_loss_ignores_non_assistant_targets(lm_corpus):
    ds = dataset(lm_corpus, ["caption_to_audio", "text_only"], train=False)
    _, batch = collate([ds[(i, 0)] for i in (0, len(ds) - 1)])
    model = make_model(lm_corpus["layout"], audio=False).eval()
    loss, stats, _ = model(**batch)
    assert torch.isfinite(loss)
    # a target with mask zero contributes nothing: change the loss_mask=0 target and keep inputs identical
    hidden = torch.randn(1, 6, 64)
    tgt = torch.full((1, 6, 4), sp.PAD)
    tgt[..., 0] = lm_corpus["layout"].text_start
    m = torch.zeros(1, 6, 4)
    m[0, 2:, 0] = 1
    ce, _ = model._stream_ce(hidden, tgt, m)
    tgt2 = tgt.clone()
    tgt2[0, 0, 0] = lm_corpus["layout"].text_start + 7
    ce2, _ = model._stream_ce(hidden, tgt2, m)
    assert torch.equal((ce * m).sum(), (ce2 * m).sum())
    # and an assistant target does change it
    tgt3 = tgt.clone()
    tgt3[0, 3, 0] = lm_corpus["layout"].text_start + 7
    ce3, _ = model._stream_ce(hidden, tgt3, m)
    assert not torch.equal((ce * m).sum(), (ce3 * m).sum())


def test_loss_uses_only_the_mask(lm_corpus):
    """Full forward: the loss equals the masked mean of per-position CE, recomputed by hand."""
    ds = dataset(lm_corpus, ["caption_to_audio"], train=False)
    _, batch = collate([ds[(0, 0)]])
    model = make_model(lm_corpus["layout"], audio=False).eval()
    loss, stats, weight = model(**batch)
    logits = model.full_logits(model.decoder(model.embed_tokens(batch["tokens"][:, :-1]))[0])  # [1,S-1,K,V]
    logp = torch.log_softmax(logits.float(), dim=-1)
    tgt = batch["tokens"][:, 1:]
    nll = -logp.gather(-1, tgt[..., None])[..., 0]
    m = batch["loss_mask"][:, 1:]
    nll = torch.where(m > 0, nll, torch.zeros_like(nll))
    assert torch.allclose(loss, (nll * m).sum() / m.sum(), atol=1e-5)
    K = lm_corpus["layout"].num_codebooks
    # audio stream positions weigh 1/K, text/closing tokens 1
    assert set(np.unique(m[m > 0].numpy()).round(4)) <= {1.0, round(1 / K, 4)}
    assert "loss_caption_to_audio" in stats and float(weight) == 1.0


def test_loss_positions_only_path_equals_scoring_every_position(lm_corpus):
    """The head runs only at loss-bearing positions; CE, correctness, loss and gradients match the
    every-position reference on a blended batch (audio generation, text, masked prompts, padding)."""
    ds = dataset(lm_corpus, ["caption_to_audio", "text_only"], train=False)
    _, batch = collate([ds[(i, 0)] for i in (0, 1, len(ds) - 1)])
    model = make_model(lm_corpus["layout"], audio=False)
    tokens, mask = batch["tokens"], batch["loss_mask"][:, 1:].float()
    assert float(mask[..., 1:].sum()) > 0 and float((mask[..., 0] == 0).sum()) > 0  # both kinds of positions
    results = []
    for all_positions in (False, True):
        model.zero_grad()
        hidden, _ = model.decoder(model.embed_tokens(tokens[:, :-1]))
        ce, correct = model._stream_ce(hidden, tokens[:, 1:], mask, all_positions=all_positions)
        loss = (ce * mask).sum() / mask.sum()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((ce.detach(), correct, loss.detach(), grads))
    (ce, cor, loss, g), (ce_ref, cor_ref, loss_ref, g_ref) = results
    assert ce.shape == ce_ref.shape == tokens[:, 1:].shape
    assert torch.allclose(ce, ce_ref, atol=1e-5) and torch.equal(cor, cor_ref)
    assert float(ce[mask == 0].abs().sum()) == 0 and not bool(cor[mask == 0].any())
    assert torch.allclose(loss, loss_ref, atol=1e-6)
    assert len(g) == len(g_ref) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g, g_ref))
    # a text-only batch never computes audio-stream logits: no gradient reaches the audio head rows
    _, text_batch = collate([ds[(len(ds) - 1, 0)]])
    model.zero_grad()
    loss, _, _ = model(**text_batch)
    loss.backward()
    lay = lm_corpus["layout"]
    assert float(model.head.weight.grad[lay.stream_start(1):].abs().sum()) == 0
    # every parameter still gets a (zero) gradient, as DDP without find_unused_parameters requires
    assert model.stream_embed.grad is not None and float(model.stream_embed.grad.abs().sum()) == 0


def test_audio_streams_never_score_outside_their_block(lm_corpus):
    lay = lm_corpus["layout"]
    model = make_model(lay, audio=False)
    with torch.no_grad():
        probs = torch.softmax(model.full_logits(torch.randn(3, 5, 64) * 10), dim=-1)  # [3,5,K,V]
    for k in range(1, lay.num_codebooks):
        a, b = lay.stream_vocab_range(k)
        assert float(probs[:, :, k, :a].sum()) == 0 and float(probs[:, :, k, b:].sum()) == 0
        assert torch.allclose(probs[:, :, k, a:b].sum(-1), torch.ones(3, 5))
    # stream 0: specials + text + audio stream 0 only
    assert float(probs[:, :, 0, lay.stream_vocab_range(0)[1]:].sum()) == 0
    # a stream-2 target from stream 1's block is a clear error
    tok = torch.full((1, 4, lay.num_codebooks), sp.PAD)
    tok[0, :, 2] = lay.stream_start(1)
    with pytest.raises(ModelInputError, match="stream 2 target id .* not in its codebook block"):
        m = torch.zeros(1, 4, lay.num_codebooks)
        m[0, :, 2] = 1
        model(tokens=tok, loss_mask=m)


def test_understanding_batch_uses_audio_encoder(lm_corpus):
    ds = dataset(lm_corpus, ["audio_qa"], train=False)
    _, batch = collate([ds[(i, 0)] for i in range(3)])
    assert batch["audio"].shape[0] == 3 and batch["audio_rows"].tolist() == [0, 1, 2]
    model = make_model(lm_corpus["layout"])
    loss, stats, _ = model(**batch)
    loss.backward()
    assert model.adapter.net.weight.grad.abs().sum() > 0  # features reached the loss
    with pytest.raises(ModelInputError, match="no audio_encoder"):
        make_model(lm_corpus["layout"], audio=False)(**batch)


def test_cfg_dropped_example_has_loss_only_on_audio(lm_corpus):
    lay = lm_corpus["layout"]
    ds = dataset(lm_corpus, ["caption_to_audio"], cfg_drop=1.0)
    key, task, ex = ds.render(0, 1)
    ref = dataset(lm_corpus, ["caption_to_audio"], cfg_drop=0.0).render(0, 1)[2]
    user, asst = ref.segments
    assert (ex.tokens[user.content_start:user.content_end] == sp.PAD).all()  # caption gone
    assert (ref.tokens[user.content_start:user.content_end, 0] != sp.PAD).all()
    nz = np.nonzero(ex.loss_mask.sum(1))[0]
    assert nz.min() >= asst.start and nz.max() < asst.end
    np.testing.assert_array_equal(ex.loss_mask, ref.loss_mask)  # loss on the audio segment kept
    # dropout rate at p=0.05 over many draws, deterministic given the seed
    ds5 = dataset(lm_corpus, ["caption_to_audio"], cfg_drop=0.05)
    drops = [int((ds5.render(i % len(ds5), r)[2].tokens[user.content_start, 0] == sp.PAD)) for r in range(40) for i in range(len(ds5))]
    assert 0.01 < np.mean(drops) < 0.12
    assert drops == [int((ds5.render(i % len(ds5), r)[2].tokens[user.content_start, 0] == sp.PAD)) for r in range(40) for i in range(len(ds5))]
    # validation never drops
    assert not any((dataset(lm_corpus, ["caption_to_audio"], train=False, cfg_drop=1.0).render(0, 1)[2].tokens[user.content_start:user.content_end] == sp.PAD).all(1))


def test_blend_shares_follow_factors(lm_corpus):
    factors = {"caption_to_audio": 2.0, "text_only": 0.5, "audio_qa": 1.0}
    ds = dataset(lm_corpus, list(factors), factors=factors)
    tokens = {t: float(sum(TaskData.load(lm_corpus["data"][t]).length(k) for k in TaskData.load(lm_corpus["data"][t]))) for t in factors}
    total = sum(factors[t] * tokens[t] for t in factors)
    shares = ds.token_shares(ds.round_items(1))
    for t in factors:
        assert abs(shares[t] - factors[t] * tokens[t] / total) < 0.03, (t, shares)
    assert not np.array_equal(ds.round_items(1), ds.round_items(2))  # the fractional part is redrawn
    np.testing.assert_array_equal(ds.round_items(3), ds.round_items(3))


def test_bucketing_keeps_padding_small():
    rng = np.random.default_rng(0)
    lens = rng.integers(20, 400, size=2000)
    batches = bucket_batches(lens, batch_bins=4000, max_batch_size=64, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    share, _, _ = padding_share(batches, lens)
    naive = [list(range(i, min(i + 16, 2000))) for i in range(0, 2000, 16)]
    assert share < 0.05 < padding_share(naive, lens)[0]
    assert all(max(lens[b]) * len(b) <= 4000 for b in batches)
    assert batches == bucket_batches(lens, batch_bins=4000, max_batch_size=64, seed=3)


def test_iter_factory_epochs_are_deterministic(lm_corpus):
    def keys(epoch):
        f = LMIterFactory(dataset(lm_corpus, seed=5), batch_bins=300, max_batch_size=4, seed=5, num_iters_per_epoch=7)
        return [k for ks, _ in f.build_iter(epoch) for k in ks]
    a = keys(2)
    assert a == keys(2) and a != keys(1) and len(a) > 0


def test_bad_inputs_give_clear_errors(lm_corpus, tmp_path):
    c = lm_corpus
    with pytest.raises(TaskDataError, match="unknown task 'sing'"):
        LMDataset([TaskSource(str(c["data"]["text_only"]), "sing")], c["layout"], build_pattern("delay"))
    with pytest.raises(TaskDataError, match="holds task 'text_only'.*given as task 'audio_qa'"):
        LMDataset([TaskSource(str(c["data"]["text_only"]), "audio_qa")], c["layout"], build_pattern("delay"))
    with pytest.raises(ExampleTooLong, match="key 'utt.*more than the model's context max_len=8"):
        dataset(c, ["caption_to_audio"], max_len=8)
    # per-stream loss weights must match the layout's K: the dataset refuses them when built, not mid-epoch
    K = c["layout"].num_codebooks
    with pytest.raises(TaskDataError, match=f"audio_weight has {K + 1} per-stream value.*K={K} audio streams"):
        dataset(c, ["caption_to_audio"], audio_weight=[1.0 / K] * (K + 1))
    # audio at the wrong rate
    d = TaskData.load(c["data"]["audio_to_caption"])
    key = d.keys()[0]
    seg = d.examples[key]["segments"][0]
    bad = tmp_path / "bad.wav"
    sf.write(bad, np.zeros(seg["num_samples"], dtype=np.float32), 8000)
    seg["wav"] = str(bad)
    p = tmp_path / "data.json"
    d.save(p)
    ds = LMDataset([TaskSource(str(p), "audio_to_caption")], c["layout"], build_pattern("delay"))
    with pytest.raises(TaskDataError, match=f"key '{key}'.*8000 Hz.*16000 Hz"):
        ds[(0, 0)]


def test_alignment_phase_trains_only_adapter_and_audio_rows(lm_corpus):
    lay = lm_corpus["layout"]
    model = make_model(lay)
    model.set_alignment_phase(True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"embed.weight"} | {n for n, _ in model.adapter.named_parameters(prefix="adapter")}
    ds = dataset(lm_corpus, ["audio_qa", "caption_to_audio"], train=False)
    _, batch = collate([ds[(i, 0)] for i in (0, len(ds) - 1)])
    loss, _, _ = model(**batch)
    loss.backward()
    g = model.embed.weight.grad
    assert g[: lay.audio_start].abs().sum() == 0 and g[lay.audio_start:].abs().sum() > 0
    assert model.adapter.net.weight.grad.abs().sum() > 0
    model.set_alignment_phase(False)
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_encoder_layer_mix_trains_the_layer_weights_of_a_frozen_encoder(lm_corpus):
    lay = lm_corpus["layout"]
    torch.manual_seed(0)
    dec = build_decoder("transformer", dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2))
    enc = build_audio_encoder("mel_transformer", dict(size="tiny", dropout=0.0, freeze=True))
    model = UALMModel(layout=lay, decoder=dec, pattern=build_pattern("delay"), audio_encoder=enc, encoder_layer_mix=True)
    assert model.adapter.layer_weights.shape == (enc.num_hidden_layers,)
    ds = dataset(lm_corpus, ["audio_qa"], train=False)
    _, batch = collate([ds[(i, 0)] for i in range(3)])
    loss, _, _ = model(**batch)
    loss.backward()
    assert model.adapter.layer_weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    # the same batch through the last layer only differs: the lower layers reach the LM
    plain = make_model(lay)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "adapter.layer_weights"})
    assert abs(float(plain(**batch)[0].detach()) - float(loss.detach())) > 1e-4
    model.set_alignment_phase(True)
    assert model.adapter.layer_weights.requires_grad


def test_encoder_layer_mix_needs_an_encoder_that_gives_its_layers(lm_corpus):
    from ualm_tk.audio_encoder import AbsAudioEncoder

    class LastLayerOnly(AbsAudioEncoder):  # a registry entry that does not implement _encode_layers
        sample_rate, frame_rate, output_size = 16000, 25.0, 8

        def _encode(self, wav, lengths, feat_lengths):
            return wav.new_zeros(wav.shape[0], int(feat_lengths.max()), 8)

    dec = build_decoder("transformer", dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2))
    with pytest.raises(ValueError, match="LastLayerOnly does not give its hidden layers; set encoder_layer_mix: false"):
        UALMModel(layout=lm_corpus["layout"], decoder=dec, pattern=build_pattern("delay"),
                  audio_encoder=LastLayerOnly(), encoder_layer_mix=True)
    with pytest.raises(NotImplementedError, match="does not give its hidden layers"):
        LastLayerOnly()(torch.zeros(1, 1, 640), all_layers=True)


def test_hf_backbone_text_rows_are_copied(lm_corpus, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ualm_tk.tokens.layout import TokenLayout

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    hf = Qwen2ForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "qwen")
    lay = TokenLayout([f"w{i}" for i in range(96)], 2, 8)
    dec = build_decoder("hf", dict(hf_model_dir=str(tmp_path / "qwen")))
    model = UALMModel(layout=lay, decoder=dec, pattern=build_pattern("delay"))
    s = lay.text_start
    assert torch.equal(model.embed.weight[s:s + 96].detach(), hf.get_input_embeddings().weight)
    assert torch.equal(model.head.weight[s:s + 96].detach(), hf.get_output_embeddings().weight)
    # a text-only sequence trains through the HF backbone
    tok = torch.zeros(1, 6, 2, dtype=torch.long)
    tok[0, :, 0] = torch.arange(s, s + 6)
    m = torch.zeros(1, 6, 2)
    m[0, 3:, 0] = 1
    loss, _, _ = model(tokens=tok, loss_mask=m)
    loss.backward()
    assert torch.isfinite(loss)
    with pytest.raises(ModelInputError, match="text block has 200 tokens"):
        UALMModel(layout=TokenLayout([f"w{i}" for i in range(200)], 2, 8),
                  decoder=build_decoder("hf", dict(hf_model_dir=str(tmp_path / "qwen"))), pattern=build_pattern("delay"))


def test_cpu_bf16_runs_the_products_in_bfloat16_and_keeps_the_loss_close(lm_corpus):
    """model_conf cpu_bf16: the decoder's products run in bfloat16 under autocast, the loss is float32 and
    within bf16 rounding of the float32 model's; weights and gradients stay float32."""
    ds = dataset(lm_corpus, ["caption_to_audio", "audio_qa", "text_only"], train=False)
    _, batch = collate([ds[(i, 0)] for i in range(4)])
    ref = make_model(lm_corpus["layout"]).eval()
    half = make_model(lm_corpus["layout"], cpu_bf16=True).eval()  # model_conf: {cpu_bf16: true}
    seen = []
    lin = next(m for m in half.decoder.modules() if isinstance(m, torch.nn.Linear))  # a product inside the decoder
    lin.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    l32, _, _ = ref(**batch)
    l16, stats, _ = half(**batch)
    assert seen == [torch.bfloat16]
    assert l16.dtype == torch.float32 and torch.isfinite(l16)
    assert abs(float(l16) - float(l32)) < 0.02 * float(l32)
    l16.backward()
    l32.backward()
    assert all(p.dtype == torch.float32 for p in half.parameters())
    for (name, p), q in zip(half.named_parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
    # off (the default): float32 throughout
    seen.clear()
    half.cpu_bf16 = False
    half(**batch)
    assert seen == [torch.float32]


def test_cpu_bf16_auto_follows_the_cpu_and_bad_values_are_refused(lm_corpus, monkeypatch):
    """model_conf cpu_bf16: auto turns bf16 autocast on only where the CPU computes bfloat16 natively (elsewhere it
    is emulated, ~10x slower than float32); true and false are kept; anything else names the key."""
    from ualm_tk.utils import cpu_precision

    for native in (True, False):
        monkeypatch.setattr(cpu_precision, "cpu_has_native_bf16", lambda: native)
        assert make_model(lm_corpus["layout"], cpu_bf16="auto").cpu_bf16 is native
        assert make_model(lm_corpus["layout"], cpu_bf16=True).cpu_bf16 is True
        assert make_model(lm_corpus["layout"], cpu_bf16=False).cpu_bf16 is False
    with pytest.raises(ValueError, match="model_conf.cpu_bf16: expected auto, true or false, got 'yes'"):
        make_model(lm_corpus["layout"], cpu_bf16="yes")


def test_reported_loss_survives_the_trainers_in_place_accum_grad_division(lm_corpus):
    """ESPnet's trainer does ``loss /= accum_grad`` on the returned loss tensor before it registers the stats:
    the stats' loss must be a copy, or the training log shows the loss divided by accum_grad."""
    ds = dataset(lm_corpus, ["caption_to_audio", "text_only"], train=False)
    _, batch = collate([ds[(i, 0)] for i in range(2)])
    loss, stats, _ = make_model(lm_corpus["layout"]).eval()(**batch)
    before = float(stats["loss"])
    loss /= 4
    assert float(stats["loss"]) == before and float(loss) == pytest.approx(before / 4)
