"""Labelled clips for training and evaluating the toolkit's own scorers, and a log-mel cache.

A set is a Kaldi data dir (``metadata``: ``<utt> <JSON>`` with an ``events`` list of
``{"class", "onset", "offset"}`` in seconds; ``text``: one caption per utt) plus the formatted
audio of stage 2 (``dump/audio/<set>/wav.scp``, 16 kHz). Relative paths in ``wav.scp`` are
resolved against the current directory, then against the ancestors of the ``wav.scp`` folder
(the recipe root), as the recipe writes them.

Several audio copies of one set (the clean clips and the codec's resynthesis of them, stage 3's
``dump/vae/<set>/wav.scp``) share its labels and utt ids: :func:`read_clip_sets` reads
``(data_dir, audio_dir)`` pairs, gives the second and later copies of a data dir the clip key
``<utt>@copy<n>`` (``Clip.key``: what features are cached and batched under; ``Clip.utt``
stays the label key), and refuses real key mistakes (one utt id in two different data dirs, an
audio dir given twice).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ualm_tk.data.kaldi_files import read_kaldi_file
from ualm_tk.scoring.models.frontend import LogMel, load_audio

logger = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]


class CorpusError(ValueError):
    """A data dir or audio dir is unusable; the message names the file and the key."""


@dataclass
class Event:
    label: str
    onset: float
    offset: float


@dataclass
class Clip:
    utt: str
    wav_path: Path
    events: List[Event] = field(default_factory=list)
    caption: Optional[str] = None
    category: Optional[str] = None  # the metadata's optional "category" (for per-category reports)
    key: str = ""  # unique among the clips read together (feature cache key); "" = utt

    def __post_init__(self):
        if not self.key:
            self.key = self.utt

    @property
    def labels(self) -> List[str]:
        return sorted({e.label for e in self.events})


def _resolve(p: str, scp: Path) -> Path:
    cand = Path(p)
    if cand.is_absolute() or cand.exists():
        return cand
    for parent in scp.resolve().parents:
        if (parent / p).exists():
            return parent / p
    return cand


def parse_events(path: Path, utt: str, value: str) -> Tuple[List[Event], Optional[str]]:
    """One ``metadata`` value (JSON with an ``events`` list of class/onset/offset) -> events, category."""
    try:
        doc = json.loads(value)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path} (key '{utt}'): metadata is not valid JSON ({e})") from e
    evs = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(evs, list):
        raise CorpusError(f"{path} (key '{utt}'): metadata has no 'events' list")
    out = []
    for i, ev in enumerate(evs):
        try:
            e = Event(str(ev["class"]), float(ev["onset"]), float(ev["offset"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CorpusError(
                f"{path} (key '{utt}'): event {i} needs 'class', 'onset', 'offset' ({err!r})"
            ) from err
        if not e.offset > e.onset >= 0:
            raise CorpusError(f"{path} (key '{utt}'): event {i} '{e.label}' has onset {e.onset} >= offset {e.offset}")
        out.append(e)
    cat = doc.get("category")
    return out, (str(cat) if cat is not None else None)


def read_clips(data_dir: PathLike, audio_dir: PathLike, need_events: bool = False,
               need_captions: bool = False) -> List[Clip]:
    """Clips of ``audio_dir/wav.scp`` joined with ``data_dir``'s ``metadata`` and ``text``."""
    data_dir, audio_dir = Path(data_dir), Path(audio_dir)
    scp = audio_dir / "wav.scp"
    if not scp.is_file():
        raise CorpusError(f"{scp}: missing (audio_dir must hold the formatted wav.scp of stage 2)")
    wavs = read_kaldi_file(scp)
    meta_path, text_path = data_dir / "metadata", data_dir / "text"
    meta = read_kaldi_file(meta_path) if meta_path.is_file() else None
    text = read_kaldi_file(text_path) if text_path.is_file() else None
    if need_events and meta is None:
        raise CorpusError(f"{meta_path}: missing (event labels are needed)")
    if need_captions and text is None:
        raise CorpusError(f"{text_path}: missing (captions are needed)")
    clips = []
    for utt, p in wavs.items():
        c = Clip(utt, _resolve(p, scp))
        if meta is not None:
            if utt not in meta:
                raise CorpusError(f"{meta_path}: no entry for key '{utt}' of {scp}")
            c.events, c.category = parse_events(meta_path, utt, meta[utt])
        if text is not None:
            if utt not in text:
                raise CorpusError(f"{text_path}: no entry for key '{utt}' of {scp}")
            c.caption = text[utt]
        if not c.wav_path.is_file():
            raise CorpusError(f"{scp} (key '{utt}'): audio file {c.wav_path} does not exist")
        clips.append(c)
    if not clips:
        raise CorpusError(f"{scp}: no clips")
    return clips


def read_clip_sets(data_dirs: Sequence[PathLike], audio_dirs: Sequence[PathLike], need_events: bool = False,
                   need_captions: bool = False) -> List[Clip]:
    """Clips of several ``(data_dir, audio_dir)`` pairs; a data dir may come with several audio copies.

    The first copy of a data dir keeps ``key == utt``; its ``n``-th copy (n >= 2, in the order
    given) gets ``key = f"{utt}@copy{n}"`` and the same events and caption.
    """
    if len(data_dirs) != len(audio_dirs):
        raise CorpusError(f"{len(data_dirs)} data dirs but {len(audio_dirs)} audio dirs (give one audio dir per data dir; "
                          "repeat a data dir to add another audio copy of it)")
    seen_audio: Dict[Path, int] = {}
    copies: Dict[Path, int] = {}
    owner: Dict[str, Path] = {}  # utt -> data dir that defines it
    out: List[Clip] = []
    for i, (d, a) in enumerate(zip(data_dirs, audio_dirs)):
        dres, ares = Path(d).resolve(), (Path(a) / "wav.scp").resolve()
        if ares in seen_audio:
            raise CorpusError(f"{Path(a) / 'wav.scp'}: given twice (pairs {seen_audio[ares] + 1} and {i + 1}); "
                              "each audio copy may be used once")
        seen_audio[ares] = i
        n = copies.get(dres, 0) + 1
        copies[dres] = n
        clips = read_clips(d, a, need_events=need_events, need_captions=need_captions)
        for c in clips:
            first = owner.setdefault(c.utt, dres)
            if first != dres:
                raise CorpusError(
                    f"{Path(a) / 'wav.scp'}: key '{c.utt}' of data dir {d} is also a key of data dir {first}; "
                    "utt ids must be unique across data dirs (to add an audio copy of a set, repeat its data dir)")
            if n > 1:
                c.key = f"{c.utt}@copy{n}"
        logger.info("%s + %s: %d clips (copy %d of this data dir)", d, a, len(clips), n)
        out += clips
    return out


def _fingerprint(clips: Sequence[Clip], frontend: LogMel) -> str:
    h = hashlib.sha1(frontend.cache_tag().encode())
    for c in clips:
        st = c.wav_path.stat()
        h.update(f"{c.key} {c.wav_path.resolve()} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def compute_logmels(clips: Sequence[Clip], frontend: LogMel,
                    cache_file: Optional[PathLike] = None) -> Dict[str, torch.Tensor]:
    """``clip key -> logmel [n_mels, N]`` (float16); reuse ``cache_file`` when it matches the clips."""
    fp = _fingerprint(clips, frontend)
    if cache_file is not None and Path(cache_file).is_file():
        blob = torch.load(cache_file, map_location="cpu", weights_only=True)
        if blob.get("fingerprint") == fp:
            logger.info("log-mel cache hit: %s (%d clips)", cache_file, len(blob["feats"]))
            return blob["feats"]
        logger.info("log-mel cache %s is stale (audio or front end changed); recomputing", cache_file)
    feats = {}
    for c in tqdm(clips, desc="log-mel", mininterval=5):
        wav = load_audio(c.wav_path, frontend.sample_rate)
        feats[c.key] = frontend(wav[None])[0].to(torch.float16)
    if cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{cache_file}.tmp{os.getpid()}")
        torch.save({"fingerprint": fp, "feats": feats}, tmp)
        os.replace(tmp, cache_file)
        logger.info("wrote log-mel cache %s", cache_file)
    return feats


def frame_targets(events: Sequence[Event], class_index: Dict[str, int], num_frames: int,
                  frame_rate: float) -> torch.Tensor:
    """Strong labels ``[T, C]``: 1 where frame ``t`` (covering ``[t, t+1)/rate`` s) overlaps an event."""
    y = torch.zeros(num_frames, len(class_index))
    for e in events:
        if e.label not in class_index:
            continue
        a = int(e.onset * frame_rate)
        b = max(a + 1, int(-(-e.offset * frame_rate // 1)))
        y[a:min(b, num_frames), class_index[e.label]] = 1.0
    return y


def frame_bce(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """BCE of frame ``logits [B,T,C]`` against strong labels ``targets [B,T,C]``, summed over classes (a rare
    class's positives are not diluted by the many negatives), averaged over the kept frames ``keep [B,T]``."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)  # [B, T]
    return (bce * keep).sum() / keep.sum()


class FrameF1:
    """Micro F1 of frame-level event predictions, accumulated batch by batch (bool arrays or tensors)."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def add(self, pred, truth) -> None:
        self.tp += int((pred & truth).sum())
        self.fp += int((pred & ~truth).sum())
        self.fn += int((~pred & truth).sum())

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)


def clip_targets(events: Sequence[Event], class_index: Dict[str, int]) -> torch.Tensor:
    """Weak labels ``[C]``."""
    y = torch.zeros(len(class_index))
    for e in events:
        if e.label in class_index:
            y[class_index[e.label]] = 1.0
    return y


def pad_logmels(mels: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """List of ``[n_mels, N_i]`` -> ``feats [B, n_mels, N]`` (zero-padded, float32), ``lengths [B]``."""
    lengths = torch.tensor([m.shape[1] for m in mels])
    out = torch.zeros(len(mels), mels[0].shape[0], int(lengths.max()))
    for i, m in enumerate(mels):
        out[i, :, : m.shape[1]] = m.float()
    return out, lengths
