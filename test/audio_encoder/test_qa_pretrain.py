"""Stage 5a: the LM's audio encoder pre-trained on categorical question labels, then loaded by the LM."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ualm_tk.data.kaldi_files import write_kaldi_file

SR = 16000
FREQS = ["220", "880"]
TINY_LM = "egs2/TEMPLATE/ualm1/conf/train_ualm_tiny.yaml"


def make_set(d: Path, n: int, seed: int):
    """Clips of a tone (220 or 880 Hz) followed or preceded by noise; questions: its frequency and
    whether the noise comes first (an order question: the answer needs positions); ``metadata``: the
    two events with their onsets and offsets."""
    rng = np.random.default_rng(seed)
    (d / "wavs").mkdir(parents=True)
    wav, q2u, qtype, answer, question, meta = {}, {}, {}, {}, {}, {}
    for i in range(n):
        utt = f"{d.name}-{i:03d}"
        f = FREQS[i % 2]
        noise_first = (i // 2) % 2 == 0
        L = SR // 2 + int(rng.integers(0, SR // 4))
        t = np.arange(L) / SR
        tone = 0.3 * np.sin(2 * np.pi * float(f) * t + rng.uniform(0, 6))
        noise = 0.1 * rng.standard_normal(SR // 4)
        x = np.concatenate([noise, tone] if noise_first else [tone, noise]).astype(np.float32)
        spans = [("noise", 0.0, 0.25), ("tone", 0.25, 0.25 + L / SR)] if noise_first else \
            [("tone", 0.0, L / SR), ("noise", L / SR, L / SR + 0.25)]
        meta[utt] = json.dumps(dict(events=[dict(zip(("class", "onset", "offset"), e)) for e in spans]))
        sf.write(d / "wavs" / f"{utt}.wav", x, SR)
        wav[utt] = str(d / "wavs" / f"{utt}.wav")
        for j, (qt, a) in enumerate((("tone_frequency", f), ("noise_first", "yes" if noise_first else "no"))):
            qid = f"{utt}-q{j}"
            q2u[qid], qtype[qid], answer[qid], question[qid] = utt, qt, a, "?"
        qid = f"{utt}-q9"  # a free-form question: not a label of the pre-training
        q2u[qid], qtype[qid], answer[qid], question[qid] = utt, "what_is_said", "hello there", "?"
    write_kaldi_file(d / "wav.scp", wav)
    write_kaldi_file(d / "metadata", meta)
    for name, tab in (("qa2utt", q2u), ("qtype", qtype), ("answer", answer), ("question", question)):
        write_kaldi_file(d / "qa" / name, tab)


@pytest.fixture(scope="module")
def qa_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa_pretrain")
    make_set(root / "train", 24, 0)
    make_set(root / "valid", 12, 1)
    qtypes = {
        "tone_frequency": dict(categorical=True, answers=FREQS),
        "noise_first": dict(categorical=True, answers=["no", "yes"]),
        "what_is_said": dict(categorical=False, answers=None),
        "_text_only": {"addition": dict(categorical=False)},
    }
    (root / "qtypes.json").write_text(json.dumps(qtypes))
    (root / "pre.yaml").write_text("max_epochs: 12\nbatch_size: 8\nlr: 3.0e-3\npatience: 12\ndropout: 0.0\n")
    return root


def run_pretrain(root: Path, out: Path, repo_root: Path, *extra: str, add_conf: str = "", lm_config=None):
    """Stage 5a on the test corpus with ``pre.yaml`` (+ the YAML lines ``add_conf``, written beside ``out``)."""
    from ualm_tk.bin.audio_encoder_pretrain import main

    conf = root / "pre.yaml"
    if add_conf:
        conf = out.parent / f"{out.name}.yaml"
        conf.write_text((root / "pre.yaml").read_text() + add_conf)
    main(["--lm_config", str(lm_config or repo_root / TINY_LM), "--config", str(conf), "--qtypes",
          str(root / "qtypes.json"), "--train_dir", str(root / "train"), "--valid_dir", str(root / "valid"),
          "--output_dir", str(out), "--num_threads", "1", *extra])


@pytest.fixture(scope="module")
def pretrained(qa_corpus, repo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "audio_encoder_qa"
    run_pretrain(qa_corpus, out, repo_root)
    return out


def test_pretraining_learns_held_out_labels_and_reports_them(pretrained):
    res = json.loads((pretrained / "results.json").read_text())
    valid = res["results"]["valid"]
    # the tone's pitch and the order of tone and noise, on clips the encoder never saw
    assert valid["per_type"]["tone_frequency"]["accuracy"] >= 0.9
    assert valid["per_type"]["noise_first"]["accuracy"] >= 0.75
    assert "what_is_said" not in valid["per_type"]
    assert valid["per_type"]["tone_frequency"]["majority"] == pytest.approx(0.5)
    md = (pretrained / "RESULTS.md").read_text()
    assert "| tone_frequency | 12 |" in md and "majority answer" in md
    hist = res["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_bf16_pretraining_learns_the_same_labels(qa_corpus, pretrained, repo_root, tmp_path):
    """``cpu_bf16: true``: the forward runs under bfloat16 autocast; the encoder still learns the held-out labels,
    its saved weights are float32, and the training curve stays close to the float32 run's."""
    out = tmp_path / "bf16"
    run_pretrain(qa_corpus, out, repo_root, add_conf="cpu_bf16: true\n")
    res = json.loads((out / "results.json").read_text())
    assert res["train_conf"]["cpu_bf16"] is True
    valid = res["results"]["valid"]["per_type"]
    assert valid["tone_frequency"]["accuracy"] >= 0.9 and valid["noise_first"]["accuracy"] >= 0.75
    assert all(v.dtype == torch.float32 for v in torch.load(out / "encoder" / "model.pth").values() if v.is_floating_point())
    ref = json.loads((pretrained / "results.json").read_text())["history"]
    assert res["history"][0]["train_loss"] == pytest.approx(ref[0]["train_loss"], rel=0.05)


def test_augmented_pretraining_learns_the_same_labels(qa_corpus, repo_root, tmp_path, monkeypatch):
    """``shift_max_s`` / ``eq_db``: training batches get leading silence and a random equaliser; the pitch and the
    order of tone and noise are still learnt (the transforms keep those labels true), and a run killed in epoch 6
    resumes with the same augmented batches (seeded by epoch and batch): the same training curve."""
    from ualm_tk.audio_encoder import qa_pretrain

    def run(out):
        run_pretrain(qa_corpus, out, repo_root, add_conf="shift_max_s: 0.2\neq_db: 4.0\n")
        return json.loads((out / "results.json").read_text())

    full = run(tmp_path / "full")
    assert full["train_conf"]["eq_db"] == 4.0 and full["train_conf"]["shift_max_s"] == 0.2
    valid = full["results"]["valid"]["per_type"]
    assert valid["tone_frequency"]["accuracy"] >= 0.9 and valid["noise_first"]["accuracy"] >= 0.75

    class Killed(Exception):
        pass

    real = qa_pretrain.batch_loss

    def spy(seen, kill_at=None):
        def batch_loss(model, clips, *args, **kwargs):  # 24 clips in batches of 8: call 17 is epoch 6's second
            if len(seen) + 1 == kill_at:
                raise Killed
            seen.append([(len(c.wav), round(float(np.abs(c.wav).sum()), 3)) for c in clips])
            return real(model, clips, *args, **kwargs)
        return batch_loss

    seen_full, seen_killed, seen_resumed = [], [], []
    monkeypatch.setattr(qa_pretrain, "batch_loss", spy(seen_full))
    run(tmp_path / "again")
    monkeypatch.setattr(qa_pretrain, "batch_loss", spy(seen_killed, kill_at=17))
    with pytest.raises(Killed):
        run(tmp_path / "killed")
    monkeypatch.setattr(qa_pretrain, "batch_loss", spy(seen_resumed))
    run(tmp_path / "killed")
    assert len(seen_full) == 36 and seen_killed == seen_full[:16]
    assert seen_resumed == seen_full[15:]  # epochs 6-12 again, batch for batch: the same augmented audio
    # 24 clips but many more lengths: each epoch draws new leading silence
    assert len({n for batch in seen_full for n, _ in batch}) > 100


def test_frame_event_loss_teaches_each_frame_what_sounds_there(qa_corpus, repo_root, tmp_path):
    """``frame_event_weight``: a frame head learns from the metadata's onsets/offsets which event sounds at each
    encoder frame (reported as frame F1 on valid clips), beside the question labels, with augmentation on (the
    leading silence moves the events along); the saved encoder is the LM's as before."""
    out = tmp_path / "frames"
    run_pretrain(qa_corpus, out, repo_root, add_conf="frame_event_weight: 1.0\nshift_max_s: 0.2\n")
    assert json.loads((out / "label_space.json").read_text())["event_classes"] == ["noise", "tone"]
    valid = json.loads((out / "results.json").read_text())["results"]["valid"]
    assert valid["frame_f1"] >= 0.85  # tone vs noise frames of unseen clips (chance-level guessing: ~0.5)
    assert valid["per_type"]["tone_frequency"]["accuracy"] >= 0.9
    assert "Frame event F1 (frame head, 2 classes" in (out / "RESULTS.md").read_text()
    assert not any(k.startswith("frame_head") for k in torch.load(out / "encoder" / "model.pth"))


def test_leading_silence_moves_the_events_along():
    from ualm_tk.audio_encoder.qa_pretrain import LabelledClip
    from ualm_tk.scoring.models.corpus import Event

    c = LabelledClip("u", np.ones(SR, np.float32), [(0, 1)], [Event("tone", 0.1, 0.6)])
    d = c.delayed(np.concatenate([np.zeros(SR // 4, np.float32), c.wav]), SR)
    assert d.events == [Event("tone", 0.35, 0.85)] and d.labels == c.labels and len(d.wav) == SR + SR // 4
    assert c.events == [Event("tone", 0.1, 0.6)]  # the original clip is unchanged


def test_the_lm_starts_from_the_pretrained_encoder(pretrained, repo_root):
    """``--init_param <dir>/encoder/model.pth::audio_encoder`` (ESPnet) puts every encoder weight into the LM."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from ualm_tk.audio_encoder import build_audio_encoder, load_audio_encoder

    enc = load_audio_encoder(pretrained / "encoder")
    conf = yaml.safe_load((repo_root / TINY_LM).read_text())
    holder = torch.nn.Module()
    holder.audio_encoder = build_audio_encoder(conf["audio_encoder"], conf["audio_encoder_conf"])
    load_pretrained_model(f"{pretrained / 'encoder' / 'model.pth'}::audio_encoder", holder, ignore_init_mismatch=False)
    got, want = holder.audio_encoder.state_dict(), enc.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_rerun_resumes_instead_of_training_again(qa_corpus, pretrained, repo_root):
    before = json.loads((pretrained / "results.json").read_text())["history"]
    run_pretrain(qa_corpus, pretrained, repo_root)
    after = json.loads((pretrained / "results.json").read_text())["history"]
    assert after == before  # every epoch was already done: nothing retrained


def test_a_checkpoint_of_another_config_is_refused_not_resumed(qa_corpus, pretrained, repo_root, tmp_path):
    """Re-running 5a with a changed config in a directory holding another run's checkpoint says so (which keys
    differ, how to start again) instead of resuming that run or failing inside torch."""
    import shutil

    out = tmp_path / "changed"
    shutil.copytree(pretrained, out)
    with pytest.raises(SystemExit, match=r"checkpoint.pth: written by a run with another config \(frame_event_weight "
                                         r"differ\); delete it \(run.sh: --force true\)"):
        run_pretrain(qa_corpus, out, repo_root, add_conf="frame_event_weight: 1.0\n")


def test_bad_labels_name_the_file_and_key(qa_corpus, repo_root, tmp_path):
    import shutil

    bad = tmp_path / "train"
    shutil.copytree(qa_corpus / "train", bad)
    ans = (bad / "qa" / "answer").read_text().replace("train-000-q0 220", "train-000-q0 440")
    (bad / "qa" / "answer").write_text(ans)
    from ualm_tk.audio_encoder.qa_pretrain import QALabelSpace, QAPretrainError, read_qa_labels

    space = QALabelSpace.from_qtypes_json(qa_corpus / "qtypes.json")
    with pytest.raises(QAPretrainError, match=r"qa/answer \(key 'train-000-q0'\): answer '440' is not one of"):
        read_qa_labels(bad, space)
    (bad / "qa" / "qtype").unlink()
    with pytest.raises(QAPretrainError, match=r"qa/qtype: missing"):
        read_qa_labels(bad, space)
    with pytest.raises(SystemExit, match="unknown key"):
        (tmp_path / "typo.yaml").write_text("max_epoch: 3\n")
        from ualm_tk.bin.audio_encoder_pretrain import read_confs

        read_confs(str(repo_root / TINY_LM), str(tmp_path / "typo.yaml"))


def test_missing_or_bad_event_metadata_names_the_file_and_key(qa_corpus, tmp_path):
    import shutil

    from ualm_tk.audio_encoder.qa_pretrain import QALabelSpace, QAPretrainError, read_labelled_clips

    space = QALabelSpace.from_qtypes_json(qa_corpus / "qtypes.json")
    good = read_labelled_clips(qa_corpus / "train", space, SR, with_events=True)
    assert len(good) == 24 and all(len(c.events) == 2 for c in good)
    bad = tmp_path / "train"
    shutil.copytree(qa_corpus / "train", bad)
    lines = (bad / "metadata").read_text().splitlines()
    (bad / "metadata").write_text("\n".join(['train-000 {"events": [{"class": "tone"}]}'] + lines[1:]) + "\n")
    with pytest.raises(QAPretrainError, match=r"metadata \(key 'train-000'\): event 0 needs 'class', 'onset'"):
        read_labelled_clips(bad, space, SR, with_events=True)
    (bad / "metadata").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(QAPretrainError, match=r"metadata: no entry for key 'train-000'"):
        read_labelled_clips(bad, space, SR, with_events=True)
    assert len(read_labelled_clips(bad, space, SR)) == 24  # without the frame loss, metadata is not read
    (bad / "metadata").unlink()
    with pytest.raises(QAPretrainError, match=r"metadata: missing"):
        read_labelled_clips(bad, space, SR, with_events=True)


def readout_lm_config(repo_root: Path, path: Path, **encoder_conf) -> Path:
    """The tiny LM config with a ``mel_transformer_qa`` encoder (``encoder_conf`` over the test corpus's label space)."""
    conf = yaml.safe_load((repo_root / TINY_LM).read_text())
    conf["audio_encoder"] = "mel_transformer_qa"
    conf["audio_encoder_conf"] = dict(dict(size="tiny", num_answers=[2, 2], num_event_classes=2, qa_dropout=0.0), **encoder_conf)
    path.write_text(yaml.safe_dump(conf))
    return path


def test_a_qa_readout_encoder_trains_and_keeps_its_heads_and_hands_their_answers_to_the_lm(qa_corpus, repo_root,
                                                                                           tmp_path):
    """``mel_transformer_qa``: 5a trains the encoder's own heads (the same run as a plain ``mel_transformer``'s:
    same initial weights, same curve) and saves them with it; every frame it gives the LM ends with the frame
    head's event posteriors and the question heads' answers, which answer the valid clips exactly as 5a's
    evaluation says; ESPnet's ``--init_param`` puts all of it into the LM's encoder."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from ualm_tk.audio_encoder import QAReadoutEncoder, build_audio_encoder, load_audio_encoder
    from ualm_tk.audio_encoder.qa_pretrain import QALabelSpace, collate_wavs, read_labelled_clips

    add = "frame_event_weight: 1.0\n"
    run_pretrain(qa_corpus, tmp_path / "plain", repo_root, add_conf=add)
    lm_config = readout_lm_config(repo_root, tmp_path / "lm.yaml")
    out = tmp_path / "readout"
    run_pretrain(qa_corpus, out, repo_root, add_conf=add, lm_config=lm_config)
    plain, res = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "plain", out))
    assert [h["train_loss"] for h in res["history"]] == pytest.approx([h["train_loss"] for h in plain["history"]],
                                                                       rel=1e-4)
    assert res["results"]["valid"]["accuracy"] == pytest.approx(plain["results"]["valid"]["accuracy"])

    enc = load_audio_encoder(out / "encoder")
    assert isinstance(enc, QAReadoutEncoder) and enc.output_size == 64 + 2 + 4
    space = QALabelSpace.from_qtypes_json(qa_corpus / "qtypes.json")
    clips = read_labelled_clips(qa_corpus / "valid", space, SR, with_events=True)
    with torch.no_grad():
        feats, n = enc(*collate_wavs(clips))  # [B,T',64 + 2 event classes + 2 + 2 answers]
    answers = feats[:, 0, 66:]
    assert torch.allclose(feats[0, : int(n[0]), 66:], answers[0].expand(int(n[0]), 4))  # the same on every frame
    for q, name in enumerate(space.qtypes):
        got = answers[:, 2 * q : 2 * q + 2].argmax(-1)
        acc = np.mean([int(got[b]) == a for b, c in enumerate(clips) for qq, a in c.labels if qq == q])
        assert acc == pytest.approx(res["results"]["valid"]["per_type"][name]["accuracy"])
    assert res["results"]["valid"]["per_type"]["tone_frequency"]["accuracy"] >= 0.9
    # the frame head: noise frames of a noise-first clip say noise (class 0), its tone frames say tone (class 1)
    first = next(b for b, c in enumerate(clips) if c.events[0].label == "noise")
    assert feats[first, 1, 64] > 0.5 > feats[first, 1, 65] and feats[first, 10, 65] > 0.5 > feats[first, 10, 64]

    holder = torch.nn.Module()
    conf = yaml.safe_load(lm_config.read_text())
    holder.audio_encoder = build_audio_encoder(conf["audio_encoder"], dict(conf["audio_encoder_conf"], freeze=True))
    load_pretrained_model(f"{out / 'encoder' / 'model.pth'}::audio_encoder", holder, ignore_init_mismatch=False)
    got, want = holder.audio_encoder.state_dict(), enc.state_dict()
    assert set(got) == set(want) and any(k.startswith("heads.") for k in want)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("encoder_conf, add_conf, match", [
    (dict(num_answers=[2, 3]), "frame_event_weight: 1.0\n",
     r"lm.yaml: audio_encoder_conf.num_answers \[2, 3\] does not fit this corpus: its categorical question types "
     r"\(tone_frequency, noise_first\) have num_answers: \[2, 2\]"),
    (dict(), "", r"num_event_classes 2 does not fit this pre-training: it trains a frame head over 0 event classes"),
    (dict(qa_heads=2), "frame_event_weight: 1.0\n", r"num_heads 4 / dropout 0.0 differ from the encoder's "
                                                    r"audio_encoder_conf qa_heads 2 / qa_dropout 0.0"),
])
def test_a_qa_readout_encoder_that_does_not_fit_the_corpus_is_refused(qa_corpus, repo_root, tmp_path, encoder_conf,
                                                                      add_conf, match):
    lm_config = readout_lm_config(repo_root, tmp_path / "lm.yaml", **encoder_conf)
    with pytest.raises(SystemExit, match=match):
        run_pretrain(qa_corpus, tmp_path / "out", repo_root, add_conf=add_conf, lm_config=lm_config)
