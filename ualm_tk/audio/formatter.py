"""Formatting one shard of a ``wav.scp``: decode, check, down-mix, resample, write.

Every input key ends up either kept (a file ``<out_dir>/wav/<key>.<ext>`` plus lines in
``wav.scp``, ``utt2num_samples`` and ``master.scp``) or rejected (a line ``<key> <reason>`` in
``rejected``); nothing is dropped silently and a bad file never stops the shard.

Resumable: an output that already exists, decodes to the expected rate, channel count and
length, is newer than its master and was written with the same parameters (recorded in
``format_params.json``) is reused instead of recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ualm_tk.audio.checks import check_audio, reason_category
from ualm_tk.audio.io import AudioError, audio_info, load_audio, save_audio
from ualm_tk.audio.layout import PARAMS_FILE, SHARD_FILES, WAV_SUBDIR
from ualm_tk.audio.resample import (
    CHANNEL_POLICIES,
    KAISER_BEST,
    apply_channel_policy,
    resample,
    resampled_length,
)
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file

logger = logging.getLogger(__name__)

AUDIO_FORMATS = {"wav": "wav", "flac": "flac"}


@dataclass(frozen=True)
class FormatConfig:
    fs: int = 16000
    channels: str = "mono"
    min_dur: float = 0.5
    max_dur: float = 30.0
    silence_db: Optional[float] = -60.0
    audio_format: str = "wav"
    subtype: str = "PCM_16"

    def __post_init__(self):
        if self.fs <= 0:
            raise ValueError(f"--fs must be positive, got {self.fs}")
        if self.channels not in CHANNEL_POLICIES:
            raise ValueError(f"--channels must be one of {CHANNEL_POLICIES}, got {self.channels!r}")
        if self.min_dur < 0 or self.max_dur <= 0 or self.min_dur > self.max_dur:
            raise ValueError(
                f"need 0 <= --min_dur <= --max_dur and --max_dur > 0, got {self.min_dur}, {self.max_dur}"
            )
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"--audio_format must be one of {sorted(AUDIO_FORMATS)}, got {self.audio_format!r}")

    def as_record(self) -> dict:
        rec = asdict(self)
        rec["resampler"] = dict(KAISER_BEST)
        return rec


@dataclass
class ClipResult:
    key: str
    num_samples: Optional[int] = None  # set when kept
    reason: Optional[str] = None  # set when rejected
    reused: bool = False


@dataclass
class ShardSummary:
    total: int = 0
    kept: int = 0
    reused: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        by = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        per_clip = 1000.0 * self.seconds / max(1, self.total)
        return (
            f"kept {self.kept} of {self.total} (reused {self.reused}), rejected "
            f"{sum(self.rejected.values())}: by reason {by}; {self.seconds:.1f} s, {per_clip:.1f} ms/clip"
        )


def _bad_key_reason(key: str) -> Optional[str]:
    if "/" in key or key in (".", "..") or "\0" in key:
        return "bad key: cannot be used as a file name"
    if len(key.encode("utf-8")) > 240:
        return "bad key: longer than 240 bytes (used as a file name)"
    return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ShardFormatter:
    """Formats clips of one shard into ``out_dir`` with one fixed :class:`FormatConfig`."""

    def __init__(self, out_dir: os.PathLike, config: FormatConfig, resume: bool = True):
        self.out_dir = Path(out_dir)
        self.wav_dir = self.out_dir / WAV_SUBDIR
        self.config = config
        self.resume = resume

    def _params_match(self) -> bool:
        path = self.out_dir / PARAMS_FILE
        if not path.exists():
            return True  # nothing recorded: outputs (if any) are checked one by one
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        return old == self.config.as_record()

    def prepare(self) -> None:
        """Record the parameters; outputs made with other parameters are deleted first.

        Deleting (rather than only ignoring) them keeps a killed re-run from reusing outputs
        of the older parameters once the new parameters are on record.
        """
        if self.wav_dir.is_dir():  # temporary files of a killed run
            for p in self.wav_dir.glob(".*.tmp*"):
                p.unlink()
        if not self.resume or not self._params_match():
            if self.wav_dir.is_dir():
                stale = [p for p in self.wav_dir.iterdir() if p.suffix[1:] in AUDIO_FORMATS.values()]
                logger.warning(
                    "%s: %s; removing %d earlier outputs",
                    self.out_dir, "resume disabled" if not self.resume else "parameters changed", len(stale),
                )
                for p in stale:
                    p.unlink()
        self.write_params()

    def write_params(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / PARAMS_FILE
        tmp = path.with_name(f".{PARAMS_FILE}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.config.as_record(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def output_path(self, key: str) -> Path:
        return self.wav_dir / f"{key}.{AUDIO_FORMATS[self.config.audio_format]}"

    def _reusable(self, src: str, out: Path) -> Optional[int]:
        """Length of an existing valid output for ``src``, or None if it must be (re)computed."""
        if not self.resume or not out.exists():
            return None
        try:
            if out.stat().st_mtime < os.stat(src).st_mtime:
                return None
            info_in = audio_info(src)
            info_out = audio_info(out)
        except (AudioError, OSError):
            return None
        cfg = self.config
        dur = info_in.frames / info_in.samplerate if info_in.samplerate else 0.0
        if not (cfg.min_dur <= dur <= cfg.max_dur):
            return None
        want_ch = 1 if cfg.channels == "mono" else info_in.channels
        want_len = resampled_length(info_in.frames, info_in.samplerate, cfg.fs)
        got = (info_out.samplerate, info_out.channels, info_out.frames, info_out.subtype)
        if got != (cfg.fs, want_ch, want_len, cfg.subtype):
            return None
        return want_len

    def format_clip(self, key: str, src: str) -> ClipResult:
        """Process one clip; returns kept (num_samples) or rejected (reason). Never raises for bad input."""
        cfg = self.config
        reason = _bad_key_reason(key)
        if reason:
            return ClipResult(key, reason=reason)
        out = self.output_path(key)
        if src.endswith("|"):
            return self._reject(key, out, "unreadable: pipe commands are not supported in wav.scp")
        if not os.path.exists(src):
            return self._reject(key, out, f"missing file: {src}")
        reused = self._reusable(src, out)
        if reused is not None:
            return ClipResult(key, num_samples=reused, reused=True)
        try:
            info = audio_info(src)
            if info.samplerate > 0 and info.frames / info.samplerate > cfg.max_dur:
                # decided from the header: a very long file is never decoded into memory
                return self._reject(key, out, f"too long ({info.frames / info.samplerate:.2f} s > {cfg.max_dur:g} s)")
            wav, sr = load_audio(src)  # wav [C, L]
        except AudioError as e:
            return self._reject(key, out, f"unreadable: {_one_line(e.reason)}")
        reason = check_audio(wav, sr, cfg.min_dur, cfg.max_dur, cfg.silence_db)
        if reason:
            return self._reject(key, out, reason)
        wav = apply_channel_policy(wav, cfg.channels)  # [C', L]
        wav = resample(wav, sr, cfg.fs)  # [C', L']
        clipped = save_audio(out, wav, cfg.fs, subtype=cfg.subtype)
        if clipped:
            logger.debug("%s: clipped %d samples after resampling", key, clipped)
        return ClipResult(key, num_samples=int(wav.shape[1]))

    def _reject(self, key: str, out: Path, reason: str) -> ClipResult:
        if out.exists():  # an output from an earlier run must not outlive its rejection
            out.unlink()
        return ClipResult(key, reason=_one_line(reason))


class _Progress:
    """tqdm on a terminal, otherwise a log line every ``log_every`` clips (readable in job logs)."""

    def __init__(self, total: int, log_every: int, desc: str):
        self.total, self.log_every, self.desc = total, log_every, desc
        self.done = 0
        self.start = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="clip")

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.log_every > 0 and (self.done % self.log_every == 0 or self.done == self.total):
            el = time.perf_counter() - self.start
            eta = el / self.done * (self.total - self.done)
            logger.info("%s: %d/%d clips, %.1f s elapsed, ETA %.1f s", self.desc, self.done, self.total, el, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_shard(
    wav_scp: os.PathLike,
    out_dir: os.PathLike,
    config: FormatConfig,
    resume: bool = True,
    log_every: int = 100,
) -> ShardSummary:
    """Format every entry of ``wav_scp`` into ``out_dir``; writes the four list files at the end."""
    entries: Dict[str, str] = read_kaldi_file(wav_scp)
    out_dir = Path(out_dir)
    for name in SHARD_FILES:  # a killed re-run must not leave the lists of an earlier run behind
        if (out_dir / name).exists():
            (out_dir / name).unlink()
    fmt = ShardFormatter(out_dir, config, resume=resume)
    fmt.prepare()
    summary = ShardSummary(total=len(entries))
    kept: List[Tuple[str, str]] = []
    nsamp: List[Tuple[str, str]] = []
    master: List[Tuple[str, str]] = []
    rejected: List[Tuple[str, str]] = []
    progress = _Progress(len(entries), log_every, f"format {Path(wav_scp).name}")
    t0 = time.perf_counter()
    for key, src in entries.items():
        try:
            res = fmt.format_clip(key, src)
        except AudioError:
            raise  # writing failed: a problem of the output disk, not of the input clip
        except Exception as e:  # noqa: BLE001 - a bad clip must not stop the shard
            logger.exception("%s: unexpected error while formatting %s", key, src)
            res = fmt._reject(key, fmt.output_path(key), f"unreadable: {type(e).__name__}: {e}")
        if res.reason is None:
            kept.append((key, str(fmt.output_path(key))))
            nsamp.append((key, str(res.num_samples)))
            master.append((key, src))
            summary.kept += 1
            summary.reused += int(res.reused)
        else:
            rejected.append((key, res.reason))
            summary.rejected[reason_category(res.reason)] += 1
            logger.info("rejected %s: %s", key, res.reason)
        progress.update()
    progress.close()
    summary.seconds = time.perf_counter() - t0
    write_kaldi_file(out_dir / "utt2num_samples", nsamp)
    write_kaldi_file(out_dir / "master.scp", master)
    write_kaldi_file(out_dir / "rejected", rejected)
    write_kaldi_file(out_dir / "wav.scp", kept)  # last: its presence marks a finished shard
    return summary
