"""Supervised pre-training of the LM's audio encoder on the corpus's categorical question labels.

The published UALM starts from a pre-trained Whisper-style encoder; a CPU recipe has none, and an
encoder learning from scratch inside the LM only sees one token of gradient per answer. Here the
encoder that the LM config names (``audio_encoder`` / ``audio_encoder_conf``) is trained first as
a classifier: for every categorical question type of ``qtypes.json`` (``categorical: true`` with an
``answers`` list) one learned multi-head query attends over the encoder frames (so order questions
such as ``first_event`` can use positions) and a small head picks the answer. Loss: mean
cross-entropy over every (clip, question) label of the batch. Only training-set labels are used;
the valid set picks the best epoch. ``shift_max_s`` / ``eq_db`` augment the training batches with
label-preserving transforms (:mod:`ualm_tk.audio_encoder.augment`), seeded by (seed, epoch, batch);
``tempo_rates`` / ``tempo_prob`` swap a clip with a rate label for a time-stretched copy whose label moves
with it (:mod:`ualm_tk.audio_encoder.tempo_relabel`; the copies are made once, before the first epoch).
``frame_event_weight > 0`` adds a frame-level event loss: a linear head on every encoder frame
predicts which event classes sound at that frame (strong labels from the onsets/offsets of the
data dir's ``metadata``, binary cross-entropy summed over classes, averaged over frames), so each
frame says what sounds *there* - what the LM reads when asked which event comes first or last.
The LM then starts from the saved encoder (``--init_param <out>/encoder/model.pth::audio_encoder``),
usually frozen.

Data: a Kaldi data dir of stage 2 (``wav.scp`` at the encoder's rate, mono) with ``qa/qa2utt``,
``qa/qtype``, ``qa/answer`` (stage 1 writes them), and ``metadata`` for the frame loss. Shapes:
``wav [B,1,L]`` -> ``feats [B,T',D]`` -> ``pooled [B,Q,D]`` -> per type ``logits [B, A_q]``; frame
head ``feats [B,T',D]`` -> ``frame_logits [B,T',C]`` (C event classes of the training metadata).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ualm_tk.audio_encoder import AbsAudioEncoder, QAReadoutEncoder
from ualm_tk.audio_encoder.augment import WavAugment
from ualm_tk.audio_encoder.qa_heads import QAHeads
from ualm_tk.audio_encoder.tempo_relabel import TempoRelabel, TempoRelabelError, time_stretch
from ualm_tk.data.kaldi_files import read_kaldi_file
from ualm_tk.data.lm_dataset import load_wav
from ualm_tk.scoring.models.corpus import CorpusError, Event, FrameF1, frame_bce, frame_targets, parse_events
from ualm_tk.utils.cpu_precision import resolve_cpu_bf16

logger = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]

TRAIN_DEFAULTS: Dict[str, Any] = dict(
    max_epochs=30, batch_size=16, lr=1.0e-3, weight_decay=0.01, warmup_epochs=1, grad_clip=1.0, patience=8, seed=0,
    # forward under torch.autocast("cpu", bfloat16), products in bf16, weights and loss float32:
    # auto / true / false (ualm_tk.utils.cpu_precision: auto = where the CPU computes bf16 natively)
    cpu_bf16=False,
    shift_max_s=0.0, eq_db=0.0,  # training-batch augmentation (ualm_tk.audio_encoder.augment); 0 = off
    frame_event_weight=0.0,  # weight of the frame-level event loss (metadata onsets/offsets); 0 = off
    # time stretch that moves a rate label (ualm_tk.audio_encoder.tempo_relabel): {qtype: {answer: rate}},
    # the chance a clip with stretched copies is swapped for one, the largest stretch; {} or 0 = off
    tempo_rates={}, tempo_prob=0.0, tempo_max_ratio=1.6,
)


class QAPretrainError(ValueError):
    """The QA labels of a data dir are unusable; the message names the file and key."""


@dataclass
class QALabelSpace:
    """Categorical question types and their answers, in the order of ``qtypes.json``."""

    qtypes: List[str]
    answers: Dict[str, List[str]]
    event_classes: List[str] = field(default_factory=list)  # frame-loss classes (empty: no frame loss)

    @classmethod
    def from_qtypes_json(cls, path: PathLike) -> "QALabelSpace":
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        names, answers = [], {}
        for name, spec in doc.items():
            if name.startswith("_") or not isinstance(spec, dict):
                continue  # e.g. "_text_only": not about audio
            if spec.get("categorical") and spec.get("answers"):
                names.append(name)
                answers[name] = [str(a) for a in spec["answers"]]
        if not names:
            raise QAPretrainError(f"{path}: no categorical question type with an 'answers' list")
        return cls(names, answers)

    def to_json(self) -> Dict[str, Any]:
        return dict(qtypes=self.qtypes, answers=self.answers, event_classes=self.event_classes)


@dataclass
class LabelledClip:
    utt: str
    wav: np.ndarray  # [L] float32
    labels: List[Tuple[int, int]]  # (question type index, answer index)
    events: List[Event] = field(default_factory=list)  # timed events of the clip (for the frame loss)

    def delayed(self, wav: np.ndarray, sample_rate: int) -> "LabelledClip":
        """This clip with ``wav`` (an augmented copy that may start with extra silence): events moved along."""
        dt = (len(wav) - len(self.wav)) / sample_rate
        moved = [Event(e.label, e.onset + dt, e.offset + dt) for e in self.events]
        return LabelledClip(self.utt, wav, self.labels, moved)

    def stretched(self, ratio: float, labels: List[Tuple[int, int]], sample_rate: int) -> "LabelledClip":
        """This clip played ``ratio`` times as fast (pitch kept), with ``labels``; events rescaled."""
        events = [Event(e.label, e.onset / ratio, e.offset / ratio) for e in self.events]
        return LabelledClip(self.utt, time_stretch(self.wav, sample_rate, ratio), labels, events)


def tempo_variants(clips: Sequence[LabelledClip], space: QALabelSpace, conf: Dict[str, Any],
                   sample_rate: int) -> Dict[int, List[LabelledClip]]:
    """``clip index -> its time-stretched, relabelled copies`` under ``conf``'s ``tempo_*`` keys ({} when off)."""
    try:
        relabel = TempoRelabel.from_conf(conf["tempo_rates"] or {}, space.qtypes, space.answers,
                                         conf["tempo_prob"], conf["tempo_max_ratio"])
    except TempoRelabelError as e:
        raise QAPretrainError(str(e)) from None
    if not relabel.active:
        return {}
    out = {i: [c.stretched(r, labels, sample_rate) for r, labels in relabel.moves(c.labels)]
           for i, c in enumerate(clips)}
    out = {i: v for i, v in out.items() if v}
    logger.info("tempo relabelling: %d of %d training clips have %d stretched copies (swapped in with p = %.2f)",
                len(out), len(clips), sum(len(v) for v in out.values()), relabel.prob)
    return out


def read_qa_labels(data_dir: PathLike, space: QALabelSpace) -> Dict[str, List[Tuple[int, int]]]:
    """``utt -> [(qtype index, answer index)]`` for the categorical questions of ``data_dir/qa``."""
    qa_dir = Path(data_dir) / "qa"
    files = {n: qa_dir / n for n in ("qa2utt", "qtype", "answer")}
    for n, p in files.items():
        if not p.is_file():
            raise QAPretrainError(f"{p}: missing (stage 1 writes qa/{n} for the question labels)")
    q2u, qtype, answer = (read_kaldi_file(files[n]) for n in ("qa2utt", "qtype", "answer"))
    index = {q: i for i, q in enumerate(space.qtypes)}
    out: Dict[str, List[Tuple[int, int]]] = {}
    for qid, utt in q2u.items():
        for name, table in (("qtype", qtype), ("answer", answer)):
            if qid not in table:
                raise QAPretrainError(f"{files[name]}: no entry for question '{qid}' of {files['qa2utt']}")
        t = qtype[qid]
        if t not in index:
            continue  # free-form (e.g. what_is_said) or a type the label space leaves out
        try:
            a = space.answers[t].index(answer[qid])
        except ValueError:
            raise QAPretrainError(
                f"{files['answer']} (key '{qid}'): answer '{answer[qid]}' is not one of the {len(space.answers[t])} "
                f"answers of question type '{t}' in qtypes.json"
            ) from None
        out.setdefault(utt, []).append((index[t], a))
    return out


def read_events(data_dir: PathLike, utts: Sequence[str]) -> Dict[str, List[Event]]:
    """``utt -> timed events`` from ``data_dir/metadata`` for every utt of ``utts``."""
    path = Path(data_dir) / "metadata"
    if not path.is_file():
        raise QAPretrainError(f"{path}: missing (the frame-level event loss needs the clips' timed events)")
    meta = read_kaldi_file(path)
    out = {}
    for u in utts:
        if u not in meta:
            raise QAPretrainError(f"{path}: no entry for key '{u}' (its clip has question labels)")
        try:
            out[u] = parse_events(path, u, meta[u])[0]
        except CorpusError as e:
            raise QAPretrainError(str(e)) from None
    return out


def read_labelled_clips(data_dir: PathLike, space: QALabelSpace, sample_rate: int,
                        with_events: bool = False) -> List[LabelledClip]:
    """Audio of ``data_dir/wav.scp`` with its categorical labels (clips without any are left out) and,
    ``with_events``, the timed events of ``data_dir/metadata``."""
    scp = Path(data_dir) / "wav.scp"
    if not scp.is_file():
        raise QAPretrainError(f"{scp}: missing (give a formatted data dir of stage 2)")
    wavs = read_kaldi_file(scp)
    labels = read_qa_labels(data_dir, space)
    unknown = sorted(set(labels) - set(wavs))
    if unknown:
        raise QAPretrainError(f"{Path(data_dir) / 'qa' / 'qa2utt'}: utterance '{unknown[0]}' is not in {scp}")
    events = read_events(data_dir, sorted(labels)) if with_events else {}
    clips = [LabelledClip(u, load_wav(p, sample_rate, u), labels[u], events.get(u, []))
             for u, p in wavs.items() if u in labels]
    if not clips:
        raise QAPretrainError(f"{data_dir}: no clip has a categorical question")
    logger.info("%s: %d clips, %d labels", data_dir, len(clips), sum(len(c.labels) for c in clips))
    return clips


class EncoderQAClassifier(torch.nn.Module):
    """Encoder + question heads (+ a frame event head when ``space.event_classes`` is not empty)."""

    def __init__(self, encoder: AbsAudioEncoder, space: QALabelSpace, num_heads: int = 4, dropout: float = 0.1,
                 heads: Optional[QAHeads] = None, frame_head: Optional[torch.nn.Linear] = None):
        """``heads`` / ``frame_head``: train these (e.g. those of a ``mel_transformer_qa`` encoder) instead of new ones."""
        super().__init__()
        self.encoder = encoder
        if heads is None:
            heads = QAHeads(encoder.output_size, [len(space.answers[q]) for q in space.qtypes], num_heads, dropout)
        if frame_head is None and space.event_classes:
            frame_head = torch.nn.Linear(encoder.output_size, len(space.event_classes))
        self.heads = heads
        self.event_index = {c: i for i, c in enumerate(space.event_classes)}
        self.frame_head = frame_head

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor
                ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        """-> per type ``logits [B, A_q]``, ``frame_logits [B,T',C]`` (None without a frame head), ``keep [B,T']``."""
        feats, flen = self.encoder(wav, lengths)  # [B,T',D], [B]
        keep = torch.arange(feats.shape[1], device=feats.device)[None, :] < flen[:, None]  # [B,T']
        frames = self.frame_head(feats) if self.frame_head is not None else None
        return self.heads(feats, keep), frames, keep

    def frame_targets(self, clips: Sequence[LabelledClip], num_frames: int) -> torch.Tensor:
        """Strong labels ``[B,T',C]`` of ``clips`` at the encoder's frame rate."""
        return torch.stack([frame_targets(c.events, self.event_index, num_frames, self.encoder.frame_rate)
                            for c in clips])


def build_classifier(encoder: AbsAudioEncoder, space: QALabelSpace, num_heads: int = 4,
                     dropout: float = 0.1) -> EncoderQAClassifier:
    """The classifier stage 5a trains around ``encoder``: new heads, or for a ``mel_transformer_qa`` encoder
    its own base and heads (which then travel with it to the LM), checked against the corpus's label space."""
    if not isinstance(encoder, QAReadoutEncoder):
        return EncoderQAClassifier(encoder, space, num_heads, dropout)
    want = [len(space.answers[q]) for q in space.qtypes]
    conf = encoder.conf
    if conf["num_answers"] != want:
        raise QAPretrainError(
            f"audio_encoder_conf.num_answers {conf['num_answers']} does not fit this corpus: its categorical question "
            f"types ({', '.join(space.qtypes)}) have num_answers: {want}")
    if conf["num_event_classes"] != len(space.event_classes):
        raise QAPretrainError(
            f"audio_encoder_conf.num_event_classes {conf['num_event_classes']} does not fit this pre-training: it "
            f"trains a frame head over {len(space.event_classes)} event classes (frame_event_weight > 0 and the "
            f"training metadata's classes; 0 when frame_event_weight is 0): set num_event_classes: "
            f"{len(space.event_classes)}")
    if (conf["qa_heads"], conf["qa_dropout"]) != (num_heads, dropout):
        raise QAPretrainError(
            f"the pre-training config's num_heads {num_heads} / dropout {dropout} differ from the encoder's "
            f"audio_encoder_conf qa_heads {conf['qa_heads']} / qa_dropout {conf['qa_dropout']} (the encoder builds "
            "its heads): make them equal")
    return EncoderQAClassifier(encoder.base, space, heads=encoder.heads, frame_head=encoder.frame_head)


def collate_wavs(clips: Sequence[LabelledClip]) -> Tuple[torch.Tensor, torch.Tensor]:
    """-> ``wav [B,1,L]`` zero-padded, ``lengths [B]``."""
    L = max(len(c.wav) for c in clips)
    wav = torch.zeros(len(clips), 1, L)
    for i, c in enumerate(clips):
        wav[i, 0, : len(c.wav)] = torch.from_numpy(c.wav)
    return wav, torch.tensor([len(c.wav) for c in clips])


def forward_logits(model: EncoderQAClassifier, clips: Sequence[LabelledClip], cpu_bf16: bool = False
                   ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
    """:meth:`EncoderQAClassifier.forward` of ``clips`` in float32, under bf16 autocast when ``cpu_bf16``."""
    wav, lengths = collate_wavs(clips)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16 and wav.device.type == "cpu"):
        logits, frames, keep = model(wav, lengths)
    return [x.float() for x in logits], (frames.float() if frames is not None else None), keep


def batch_loss(model: EncoderQAClassifier, clips: Sequence[LabelledClip], cpu_bf16: bool = False,
               frame_weight: float = 0.0) -> Tuple[torch.Tensor, int]:
    """Mean CE over every label of the batch (+ ``frame_weight`` x the frame event loss)
    -> ``(loss, number of labels)``."""
    logits, frames, keep = forward_logits(model, clips, cpu_bf16)
    total, n = 0.0, 0
    for b, c in enumerate(clips):
        for q, a in c.labels:
            total = total + F.cross_entropy(logits[q][b : b + 1], torch.tensor([a]), reduction="sum")
            n += 1
    loss = total / max(n, 1)
    if frame_weight > 0 and frames is not None:
        loss = loss + frame_weight * frame_bce(frames, model.frame_targets(clips, frames.shape[1]), keep)
    return loss, n


def length_batches(clips: Sequence[LabelledClip], batch_size: int, rng: Optional[random.Random]) -> List[List[int]]:
    """Indices sorted by length, cut into batches (little padding), batch order shuffled when ``rng``."""
    order = sorted(range(len(clips)), key=lambda i: len(clips[i].wav))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


@torch.no_grad()
def evaluate(model: EncoderQAClassifier, clips: Sequence[LabelledClip], space: QALabelSpace,
             batch_size: int = 16, cpu_bf16: bool = False) -> Dict[str, Any]:
    """Per question type: accuracy, count, majority-answer share of this set; overall accuracy; with a
    frame head, ``frame_f1`` (micro F1 of the frame event predictions at posterior 0.5)."""
    model.eval()
    correct = np.zeros(len(space.qtypes))
    count = np.zeros(len(space.qtypes))
    answers: List[Dict[int, int]] = [dict() for _ in space.qtypes]
    frame_f1 = FrameF1()
    for idx in length_batches(clips, batch_size, None):
        batch = [clips[i] for i in idx]
        logits, frames, keep = forward_logits(model, batch, cpu_bf16)
        if frames is not None:
            truth = model.frame_targets(batch, frames.shape[1]) > 0.5  # [B,T',C]
            frame_f1.add((frames > 0) & keep[:, :, None], truth & keep[:, :, None])
        for b, c in enumerate(batch):
            for q, a in c.labels:
                correct[q] += int(int(logits[q][b].argmax()) == a)
                count[q] += 1
                answers[q][a] = answers[q].get(a, 0) + 1
    per_type = {
        t: dict(accuracy=float(correct[i] / count[i]), count=int(count[i]),
                majority=float(max(answers[i].values()) / count[i]))
        for i, t in enumerate(space.qtypes) if count[i] > 0
    }
    out = dict(accuracy=float(correct.sum() / max(count.sum(), 1)), count=int(count.sum()), per_type=per_type)
    if model.frame_head is not None:
        out["frame_f1"] = frame_f1.f1
    return out


def pretrain(model: EncoderQAClassifier, train: Sequence[LabelledClip], valid: Sequence[LabelledClip],
             space: QALabelSpace, out_dir: Path, conf: Dict[str, Any]) -> Dict[str, Any]:
    """Train with AdamW (linear warm-up, cosine decay), keep the best valid epoch, resume from
    ``out_dir/checkpoint.pth``; returns the history and the best epoch's valid results."""
    torch.manual_seed(conf["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=conf["lr"], weight_decay=conf["weight_decay"])
    steps_per_epoch = math.ceil(len(train) / conf["batch_size"])
    total = conf["max_epochs"] * steps_per_epoch
    warm = max(1, int(conf["warmup_epochs"] * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    state = dict(epoch=0, history=[], best=None, best_epoch=0, stopped=False)
    ckpt = out_dir / "checkpoint.pth"
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if saved.get("conf", conf) != conf:
            changed = sorted(k for k in set(conf) | set(saved["conf"]) if conf.get(k) != saved["conf"].get(k))
            raise QAPretrainError(f"{ckpt}: written by a run with another config ({', '.join(changed)} differ); "
                                  "delete it (run.sh: --force true) to train again with this one")
        odd = sorted(set(model.state_dict()) ^ set(saved["model"]))
        if odd:
            raise QAPretrainError(f"{ckpt}: its weights do not fit this model (e.g. '{odd[0]}', {len(odd)} names "
                                  "differ); delete it (run.sh: --force true) to train again")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optim"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        logger.info("resumed from %s after epoch %d", ckpt, state["epoch"])
    try:
        bf16 = resolve_cpu_bf16(conf["cpu_bf16"])
    except ValueError as e:
        raise QAPretrainError(str(e)) from None
    rng = random.Random(conf["seed"])
    augment = WavAugment(model.encoder.sample_rate, conf["shift_max_s"], conf["eq_db"])
    variants = tempo_variants(train, space, conf, model.encoder.sample_rate)
    for _ in range(state["epoch"]):  # same batch order as an uninterrupted run
        length_batches(train, conf["batch_size"], rng)
    while state["epoch"] < conf["max_epochs"] and not state.get("stopped"):
        epoch = state["epoch"] + 1
        model.train()
        t0, loss_sum, n_sum = time.time(), 0.0, 0
        batches = length_batches(train, conf["batch_size"], rng)
        for b, idx in enumerate(batches, 1):
            clips = [train[i] for i in idx]
            arng = np.random.default_rng([conf["seed"], epoch, b])  # seeded: a resumed run sees the same batches
            if variants:
                swap = [i in variants and arng.random() < conf["tempo_prob"] for i in idx]
                clips = [variants[i][int(arng.integers(len(variants[i])))] if s else c
                         for i, c, s in zip(idx, clips, swap)]
            if augment.active:
                clips = [c.delayed(augment(c.wav, arng), augment.sample_rate) for c in clips]
            loss, n = batch_loss(model, clips, bf16, conf["frame_event_weight"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), conf["grad_clip"])
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * n
            n_sum += n
            if b % 25 == 0:
                logger.info("epoch %d: batch %d/%d, train loss %.3f", epoch, b, len(batches), loss_sum / max(n_sum, 1))
        res = evaluate(model, valid, space, conf["batch_size"], bf16)
        rec = dict(epoch=epoch, train_loss=loss_sum / max(n_sum, 1), valid_accuracy=res["accuracy"],
                   seconds=round(time.time() - t0, 1))
        state["history"].append(rec)
        logger.info("epoch %d/%d: train loss %.3f, valid accuracy %.3f (%.0f s)", epoch, conf["max_epochs"],
                    rec["train_loss"], rec["valid_accuracy"], rec["seconds"])
        if state["best"] is None or res["accuracy"] > state["best"]["accuracy"]:
            state["best"], state["best_epoch"] = res, epoch
            tmp = out_dir / ".best.pth.tmp"
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, out_dir / "best.pth")
        state["epoch"] = epoch
        if epoch - state["best_epoch"] >= conf["patience"]:
            logger.info("no valid improvement for %d epochs: stopping after epoch %d", conf["patience"], epoch)
            state["stopped"] = True
        tmp = out_dir / ".checkpoint.pth.tmp"
        torch.save(dict(model=model.state_dict(), optim=opt.state_dict(), sched=sched.state_dict(), state=state,
                        conf=conf), tmp)
        os.replace(tmp, ckpt)
    return state


def results_markdown(space: QALabelSpace, results: Dict[str, Dict[str, Any]], state: Dict[str, Any]) -> str:
    """A table per evaluated set: accuracy and majority-answer share per question type."""
    lines = ["# Audio encoder pre-training on categorical question labels", "",
             f"Best epoch {state['best_epoch']} of {state['epoch']} (by valid accuracy).", ""]
    for name, res in results.items():
        lines += [f"## {name}: accuracy {res['accuracy']:.3f} over {res['count']} questions", ""]
        if "frame_f1" in res:
            lines += [f"Frame event F1 (frame head, {len(space.event_classes)} classes, posterior 0.5): "
                      f"{res['frame_f1']:.3f}", ""]
        lines += ["| question type | questions | accuracy | majority answer |", "|---|---:|---:|---:|"]
        for t in space.qtypes:
            r = res["per_type"].get(t)
            if r:
                lines.append(f"| {t} | {r['count']} | {r['accuracy']:.3f} | {r['majority']:.3f} |")
        lines.append("")
    lines += ["## Training", "", "| epoch | train loss | valid accuracy | seconds |", "|---:|---:|---:|---:|"]
    lines += [f"| {h['epoch']} | {h['train_loss']:.3f} | {h['valid_accuracy']:.3f} | {h['seconds']} |"
              for h in state["history"]]
    return "\n".join(lines) + "\n"
