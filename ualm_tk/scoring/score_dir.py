#!/usr/bin/env python3
"""Score a decode directory against references, over the full key set.

    python -m ualm_tk.scoring.score_dir --hyp_dir exp/ualm_x/decode_y/test --ref_dir data/test \
        [--audio_metrics mel_distance mrstft si_sdr pesq stoi] [--captions true] [--out_dir DIR]

Paired audio metrics (``--audio_metrics``, off by default) compare each hypothesis with the
reference clip of the same key, so they only make sense for reconstructions (codec, VAE) and
other time-aligned outputs; relative paths in a ``wav.scp`` are taken from the current
directory, else from the list's own directory.

The hypothesis directory holds ``wav.scp`` (generated/decoded audio; ``--hyp_wav_scp`` picks
another name such as ``wav_vae.scp``) and/or ``text`` (generated captions or answers). The
reference is a data directory (``wav.scp``, ``text``, ``metadata``) or the files given one by
one (``--ref_wav_scp``, ``--ref_text`` repeatable for several references per key,
``--ref_metadata``). Every scored pair of files must hold exactly the same keys: missing or extra
keys are an error that lists a few of them, never a silent subset.

Writes ``scores.json`` (metric -> value, direction, backbone, sample rate, n, details),
``scores_per_key.json`` and ``RESULTS.md`` into ``--out_dir`` (default: the hypothesis directory).

Model-based metrics (FD, KL, IS, CLAP score, event accuracy) need an evaluator model: give its
directory with ``--scorer_dir`` (a ``scorer`` registry component, see :mod:`ualm_tk.scoring.models`;
:func:`scorer_interfaces` maps its outputs to metrics), or pass callables to the Python API
:func:`score_directory` (``audio_embedder``, ``text_embedder``, ``clip_classifier``, ``tagger``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ualm_tk.audio.io import AudioError, load_audio
from ualm_tk.audio.resample import resample
from ualm_tk.data.kaldi_files import KaldiFileError, read_kaldi_file
from ualm_tk.scoring import reconstruction
from ualm_tk.scoring.metrics import quality
from ualm_tk.utils.component_dir import ComponentDirError
from ualm_tk.scoring.metrics.result import (HIGHER, LOWER, KeyMismatchError, MetricResult, check_same_keys,
                                            results_table)

logger = logging.getLogger(__name__)

# name -> (function(ref, est, sr) -> float, direction, display name)
_RECON = {
    "mel_distance": (lambda r, e, sr: reconstruction.mel_distance(r, e, sr), LOWER, "mel distance (80 log-mel, L1)"),
    "mrstft": (lambda r, e, sr: reconstruction.multires_stft_distance(r, e), LOWER, "multi-resolution STFT distance"),
    "si_sdr": (lambda r, e, sr: reconstruction.si_sdr(r, e), HIGHER, "SI-SDR (dB)"),
    "lsd": (lambda r, e, sr: reconstruction.log_spectral_distance(r, e, sr), LOWER, "log-spectral distance (dB)"),
}
_QUALITY = {
    "pesq": ("PESQ", lambda r, e, sr: quality.pesq_wb(r, e, sr), None),
    "stoi": ("STOI", lambda r, e, sr: quality.stoi(r, e, sr), None),
    "estoi": ("ESTOI", lambda r, e, sr: quality.stoi(r, e, sr, extended=True), None),
    "visqol_speech": ("ViSQOL", lambda r, e, sr: quality.visqol(r, e, sr, "speech"), "speech"),
    "visqol_audio": ("ViSQOL", lambda r, e, sr: quality.visqol(r, e, sr, "audio"), "audio"),
}
AUDIO_METRICS = tuple(_RECON) + tuple(_QUALITY)
# none by default: generated audio is not time-aligned with the reference, so paired metrics are
# opt-in (codec/VAE reconstructions, TTS against its recording)
DEFAULT_AUDIO_METRICS: tuple = ()


class ScoringInputError(ValueError):
    """The hypothesis or reference files cannot be scored; the message names file and key."""


def _scp_path(scp: Path, key: str, value: str) -> str:
    if value.rstrip().endswith("|"):
        raise ScoringInputError(f"{scp} (key '{key}'): piped entries are not supported; write the audio to files")
    path = value
    if not os.path.isabs(value) and not os.path.exists(value):
        path = str(scp.parent / value)  # relative to the list's own directory
    if not os.path.isfile(path):
        raise ScoringInputError(f"{scp} (key '{key}'): audio file does not exist: {value}")
    return path


def read_wav_scp(scp: Path) -> Dict[str, str]:
    """``wav.scp`` -> key -> existing file path (relative paths: cwd first, then beside the scp)."""
    scp = Path(scp)
    return {k: _scp_path(scp, k, v) for k, v in read_kaldi_file(scp).items()}


def _load(path: str, sr: Optional[int]) -> tuple:
    wav, native = load_audio(path)  # [C, L]
    if sr is not None and native != sr:
        wav = resample(wav, native, sr)
    return wav, sr or native


def _per_key_result(name: str, values: Dict[str, float], direction: str, backbone: str,
                    sr: Optional[int]) -> MetricResult:
    vals = list(values.values())
    return MetricResult(name, float(np.mean(vals)), direction, backbone, sr, len(vals),
                        {"std": float(np.std(vals)), "per_key": values})


def _named(model: Any, what: str) -> str:
    name = getattr(model, "name", None)
    if not name:
        raise ValueError(f"the {what} needs a 'name' attribute (recorded as the metric's backbone)")
    return str(name)


def score_directory(
    hyp_dir: Path,
    ref_dir: Optional[Path] = None,
    ref_wav_scp: Optional[Path] = None,
    ref_texts: Sequence[Path] = (),
    ref_metadata: Optional[Path] = None,
    hyp_wav_scp: str = "wav.scp",
    audio_metrics: Sequence[str] = DEFAULT_AUDIO_METRICS,
    captions: bool = True,
    meteor: bool = True,
    sample_rate: Optional[int] = None,
    audio_embedder: Optional[Callable] = None,
    text_embedder: Optional[Callable] = None,
    clap_audio_embedder: Optional[Callable] = None,
    clip_classifier: Optional[Callable] = None,
    tagger: Optional[Callable] = None,
    kl_direction: str = "ref||gen",
    event_threshold: float = 0.5,
    is_splits: int = 10,
    require_results: bool = True,
) -> Dict[str, MetricResult]:
    """Score ``hyp_dir`` against the reference; returns metric key -> :class:`MetricResult`.

    Audio hypotheses (``hyp_dir/<hyp_wav_scp>``):
      * paired with reference audio: ``audio_metrics`` (reconstruction + PESQ/STOI/ViSQOL) at
        ``sample_rate`` (default: the reference's rate, which must then be one rate for all clips);
      * ``audio_embedder(wav [1, L], sr) -> emb [D]`` (attributes ``name``, ``sample_rate``): FD
        of hypothesis vs reference audio embeddings;
      * ``text_embedder(str) -> emb [D]`` with ``clap_audio_embedder`` (its audio tower, same
        space; default ``audio_embedder``): the CLAP score of each hypothesis against its
        reference caption (the first reference ``text``);
      * ``clip_classifier(wav [1, L], sr) -> outputs [C]`` (attributes ``name``, ``sample_rate``,
        ``kind``: a :data:`~ualm_tk.scoring.metrics.distribution.POSTERIOR_KINDS` value): paired KL
        against the reference audio and the Inception Score of the hypotheses (single-label
        classifiers and at least ``is_splits`` clips only; otherwise a warning says it was skipped);
      * ``tagger(wav [1, L], sr) -> (probs [T, C], frame_rate, class_names)`` (attributes ``name``,
        ``sample_rate``) with reference metadata: event recall/precision and event-order accuracy.
    Text hypotheses (``hyp_dir/text``) with reference ``text`` file(s): caption metrics.
    """
    from ualm_tk.scoring.metrics import distribution, events

    hyp_dir = Path(hyp_dir)
    if not hyp_dir.is_dir():
        raise ScoringInputError(f"hypothesis directory {hyp_dir} does not exist")
    if ref_dir is not None:
        ref_dir = Path(ref_dir)
        if not ref_dir.is_dir():
            raise ScoringInputError(f"reference directory {ref_dir} does not exist")
        ref_wav_scp = ref_wav_scp or (ref_dir / "wav.scp" if (ref_dir / "wav.scp").is_file() else None)
        ref_texts = list(ref_texts) or ([ref_dir / "text"] if (ref_dir / "text").is_file() else [])
        ref_metadata = ref_metadata or (ref_dir / "metadata" if (ref_dir / "metadata").is_file() else None)
    for name in audio_metrics:
        if name not in AUDIO_METRICS:
            raise ValueError(f"unknown audio metric {name!r}; choose from {AUDIO_METRICS}")
    results: Dict[str, MetricResult] = {}
    hyp_scp, hyp_text = hyp_dir / hyp_wav_scp, hyp_dir / "text"
    if not hyp_scp.is_file() and not hyp_text.is_file():
        raise ScoringInputError(f"{hyp_dir} holds neither {hyp_wav_scp} nor text: nothing to score")

    if hyp_scp.is_file():
        hyp_wavs = read_wav_scp(hyp_scp)
        ref_wavs = read_wav_scp(ref_wav_scp) if ref_wav_scp else None
        if ref_wavs is not None:
            check_same_keys(hyp_wavs, ref_wavs, str(hyp_scp), str(ref_wav_scp))
        if audio_metrics and ref_wavs is not None:
            results.update(_paired_audio(hyp_wavs, ref_wavs, audio_metrics, sample_rate))
        elif audio_metrics:
            logger.info("no reference wav.scp: paired audio metrics skipped")
        if audio_embedder is not None and ref_wavs is not None:
            results["FD"] = _fd(hyp_wavs, ref_wavs, audio_embedder)
        elif audio_embedder is not None:
            logger.warning("no reference wav.scp: FD not computed")
        if text_embedder is not None and ref_texts:
            results["CLAP"] = _clap(hyp_wavs, ref_texts[0], clap_audio_embedder or audio_embedder, text_embedder)
        if clip_classifier is not None:
            name, sr = _named(clip_classifier, "clip classifier"), int(clip_classifier.sample_rate)
            kind = getattr(clip_classifier, "kind", "softmax_logits")
            gen = _map_audio(hyp_wavs, sr, clip_classifier, "classify hyp")
            if kind not in ("softmax_logits", "probs"):  # IS is defined for single-label posteriors only
                logger.warning("clip classifier is multi-label (%s): Inception Score not computed", kind)
            elif len(gen) < is_splits:
                logger.warning("%d clips < %d splits: Inception Score not computed", len(gen), is_splits)
            else:
                results["IS"] = distribution.inception_score(np.stack([gen[k] for k in sorted(gen)]), name, sr,
                                                             splits=is_splits, kind=kind)
            if ref_wavs is not None:
                ref = _map_audio(ref_wavs, sr, clip_classifier, "classify ref")
                results["KL"] = distribution.paired_kl(gen, ref, name, sr, kl_direction, kind)
        if tagger is not None and ref_metadata is None:
            logger.warning("no reference metadata (data/<set>/metadata): event metrics not computed")
        elif tagger is not None:
            meta = events.load_metadata(ref_metadata)
            check_same_keys(hyp_wavs, meta, str(hyp_scp), str(ref_metadata))
            name, sr = _named(tagger, "tagger"), int(tagger.sample_rate)
            post = _map_audio(hyp_wavs, sr, tagger, "tag hyp")
            results.update(events.event_metrics(post, meta, name, sr, event_threshold))

    if hyp_text.is_file() and captions:
        if not ref_texts:
            logger.info("no reference text: caption metrics skipped")
        else:
            from ualm_tk.scoring.metrics.captions import caption_metrics

            hyps = read_kaldi_file(hyp_text)
            refs: Dict[str, List[str]] = {}
            for i, rt in enumerate(ref_texts):
                r = read_kaldi_file(rt)
                check_same_keys(hyps, r, str(hyp_text), str(rt))
                for k, v in r.items():
                    refs.setdefault(k, []).append(v)
            results.update(caption_metrics(hyps, refs, meteor=meteor))
    if not results and require_results:
        raise ScoringInputError(f"nothing was scored for {hyp_dir}: give a reference text for captions, "
                                f"--audio_metrics for paired audio, or scoring models (Python API)")
    return results


def _map_audio(wavs: Mapping[str, str], sr: int, fn: Callable, desc: str) -> Dict[str, Any]:
    out = {}
    for k in tqdm(sorted(wavs), desc=desc, leave=False):
        wav, _ = _load(wavs[k], sr)
        out[k] = fn(wav.mean(axis=0, keepdims=True), sr)  # mono [1, L]
    return out


def _fd(hyp_wavs, ref_wavs, audio_embedder) -> MetricResult:
    from ualm_tk.scoring.metrics import distribution

    name, sr = _named(audio_embedder, "audio embedder"), int(audio_embedder.sample_rate)
    hyp = _map_audio(hyp_wavs, sr, audio_embedder, "embed hyp")
    ref = _map_audio(ref_wavs, sr, audio_embedder, "embed ref")
    return distribution.frechet_distance(np.stack([hyp[k] for k in sorted(hyp)]),
                                         np.stack([ref[k] for k in sorted(ref)]), name, sr)


def _clap(hyp_wavs, ref_text: Path, audio_embedder, text_embedder) -> MetricResult:
    from ualm_tk.scoring.metrics import distribution

    if audio_embedder is None:
        raise ValueError("CLAP score: a text embedder was given without an audio embedder of the same space")
    texts = read_kaldi_file(ref_text)
    check_same_keys(hyp_wavs, texts, "hypothesis audio", str(ref_text))
    name, sr = _named(audio_embedder, "audio embedder"), int(audio_embedder.sample_rate)
    hyp = _map_audio(hyp_wavs, sr, audio_embedder, "embed hyp (text-audio)")
    temb = {k: text_embedder(texts[k]) for k in sorted(texts)}
    tname = _named(text_embedder, "text embedder")
    return distribution.clap_score(temb, hyp, name if tname == name else f"{name} + {tname}", sr)


class _Bound:
    """One method of a scorer as a callable carrying the scorer's ``name`` and ``sample_rate``."""

    def __init__(self, fn: Callable, name: str, sample_rate: int, kind: Optional[str] = None):
        self.fn, self.name, self.sample_rate, self.kind = fn, name, sample_rate, kind

    def __call__(self, *args):
        return self.fn(*args)


def scorer_interfaces(scorer: Any, name: str) -> Dict[str, Callable]:
    """Keyword arguments of :func:`score_directory` from one evaluator model of the ``scorer``
    registry (:class:`ualm_tk.scoring.models.abs_scorer.AbsScorer`): ``embed`` -> FD,
    ``clip_posteriors`` (independent per-class probabilities) -> per-class Bernoulli KL,
    ``frame_posteriors`` -> event metrics, ``embed_audio`` + ``embed_text`` -> CLAP score.
    ``name`` (e.g. the registry name plus the checkpoint) is recorded as the backbone."""
    sr, caps = int(scorer.sample_rate), set(getattr(scorer, "capabilities", ()))
    out: Dict[str, Callable] = {"audio_embedder": _Bound(scorer.embed, name, sr)}
    if "clip_posteriors" in caps:
        out["clip_classifier"] = _Bound(lambda w, r: scorer.clip_posteriors(w, r)[0], name, sr, "multilabel_probs")
    if "frame_posteriors" in caps:
        out["tagger"] = _Bound(scorer.frame_posteriors, name, sr)
    if {"embed_audio", "embed_text"} <= caps:
        out["clap_audio_embedder"] = _Bound(scorer.embed_audio, name, sr)
        out["text_embedder"] = _Bound(scorer.embed_text, name, sr)
    return out


def _paired_audio(hyp_wavs: Mapping[str, str], ref_wavs: Mapping[str, str], metrics: Sequence[str],
                  sample_rate: Optional[int]) -> Dict[str, MetricResult]:
    values: Dict[str, Dict[str, float]] = {m: {} for m in metrics}
    rates = set()
    for k in tqdm(sorted(ref_wavs), desc="paired audio metrics", leave=False):
        ref, sr = _load(ref_wavs[k], sample_rate)
        rates.add(sr)
        if sample_rate is None and len(rates) > 1:
            raise ScoringInputError(f"reference clips have different sample rates {sorted(rates)} (key '{k}'); "
                                    f"set sample_rate to score them under one protocol")
        est, _ = _load(hyp_wavs[k], sr)
        for m in metrics:
            try:
                if m in _RECON:
                    values[m][k] = _RECON[m][0](ref, est, sr)
                else:
                    values[m][k] = _QUALITY[m][1](ref, est, sr)
            except quality.QualityMetricError as e:
                raise ScoringInputError(f"{m} on key '{k}' ({hyp_wavs[k]} vs {ref_wavs[k]}): {e}") from None
    (sr,) = rates
    out = {}
    for m in metrics:
        if m in _RECON:
            out[m] = _per_key_result(m, values[m], _RECON[m][1], f"ualm_tk.scoring.reconstruction: {_RECON[m][2]}", sr)
        else:
            out[m] = quality.describe(_QUALITY[m][0], values[m], _QUALITY[m][2])
    return out


def write_scores(results: Mapping[str, MetricResult], out_dir: Path) -> None:
    """``scores.json`` (per-key values stripped), ``scores_per_key.json`` and ``RESULTS.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, per_key = {}, {}
    for name, r in results.items():
        d = r.to_dict()
        per_key[name] = d["details"].pop("per_key", None)
        summary[name] = d
    for fname, obj in (("scores.json", summary), ("scores_per_key.json", per_key)):
        tmp = out_dir / f".{fname}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, out_dir / fname)
    (out_dir / "RESULTS.md").write_text(results_table(results) + "\n", encoding="utf-8")


def get_parser() -> argparse.ArgumentParser:
    from espnet2.utils.types import str2bool

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hyp_dir", required=True, help="decode directory with wav.scp and/or text")
    p.add_argument("--hyp_wav_scp", default="wav.scp", help="name of the audio list inside hyp_dir")
    p.add_argument("--ref_dir", default=None, help="reference data directory (wav.scp, text, metadata)")
    p.add_argument("--ref_wav_scp", default=None)
    p.add_argument("--ref_text", action="append", default=[], help="reference captions; repeat for more per key")
    p.add_argument("--ref_metadata", default=None)
    p.add_argument("--audio_metrics", nargs="*", default=list(DEFAULT_AUDIO_METRICS), choices=AUDIO_METRICS,
                   help="paired metrics against the reference clip of each key (reconstructions only)")
    p.add_argument("--captions", type=str2bool, default=True)
    p.add_argument("--meteor", type=str2bool, default=True, help="METEOR starts a Java process (~5 s)")
    p.add_argument("--sample_rate", type=int, default=None, help="score audio at this rate (default: reference's)")
    p.add_argument("--scorer_dir", action="append", default=[],
                   help="evaluator model directory (ualm_tk.scoring.models.save_scorer) for FD, KL, event "
                        "accuracy, CLAP score; repeat for several (metric keys then get '[<dir name>]')")
    p.add_argument("--kl_direction", default="ref||gen", choices=["ref||gen", "gen||ref"])
    p.add_argument("--event_threshold", type=float, default=0.5)
    p.add_argument("--out_dir", default=None, help="default: hyp_dir")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.ref_dir is None and not (args.ref_wav_scp or args.ref_text or args.ref_metadata):
        raise SystemExit("score_dir: give --ref_dir or at least one of --ref_wav_scp/--ref_text/--ref_metadata")
    refs = dict(ref_dir=Path(args.ref_dir) if args.ref_dir else None,
                ref_wav_scp=Path(args.ref_wav_scp) if args.ref_wav_scp else None,
                ref_texts=[Path(t) for t in args.ref_text],
                ref_metadata=Path(args.ref_metadata) if args.ref_metadata else None)
    try:
        results = score_directory(Path(args.hyp_dir), **refs, hyp_wav_scp=args.hyp_wav_scp,
                                  audio_metrics=args.audio_metrics, captions=args.captions, meteor=args.meteor,
                                  sample_rate=args.sample_rate, require_results=False)
        for sdir in args.scorer_dir:
            from ualm_tk.scoring.models import load_scorer, scorer_name

            scorer = load_scorer(sdir)
            name = f"{scorer_name(scorer)} ({sdir})"
            logging.info("scoring with %s", name)
            res = score_directory(Path(args.hyp_dir), **refs, hyp_wav_scp=args.hyp_wav_scp, audio_metrics=(),
                                  captions=False, kl_direction=args.kl_direction,
                                  event_threshold=args.event_threshold, require_results=False,
                                  **scorer_interfaces(scorer, name))
            tag = f"[{Path(sdir).name}]" if len(args.scorer_dir) > 1 else ""
            results.update({f"{k}{tag}": v for k, v in res.items()})
        if not results:
            raise ScoringInputError(f"nothing was scored for {args.hyp_dir}: give a reference text for captions, "
                                    f"--audio_metrics for paired audio, or --scorer_dir")
    except (ScoringInputError, KeyMismatchError, KaldiFileError, AudioError, ComponentDirError) as e:
        logging.error("%s", e)
        raise SystemExit(f"score_dir: {e}") from None
    out_dir = Path(args.out_dir or args.hyp_dir)
    write_scores(results, out_dir)
    print(results_table(results))
    logging.info("wrote %s", out_dir / "scores.json")


if __name__ == "__main__":
    main()
