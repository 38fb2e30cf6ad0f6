"""Sharded, resumable decoding of a data.json (stage 7) and merging of the shards.

One job of an ``nj``-way array decodes the ``job``-th contiguous shard of the example keys
(byte order, after ``--max_examples``), so the split never depends on the machine. Each key gets
its own seed (:func:`key_seed`: from the run seed and the key), so the outputs of an example are
the same whatever ``nj`` is.

Layout of one shard directory ``DIR/output.JOB/``::

    keys            the shard's keys, one a line (written first; a rerun must find the same keys)
    settings.json   the decode settings (a rerun with other settings is refused, not mixed)
    partial/        one finished result per key, written atomically (temp + rename):
                    <key>.txt (text answer) or <key>.npz (codes [T,K] int16 per sample; written after the wavs)
    partial_thinking/  <key>.txt: the text segments before the answer (joined by " | "), written
                    before the key's answer; only for keys whose model turn had several segments
    wav/ wav_vae/   <key>.wav (audio outputs with a codec / VAE)
    text [thinking] | codes.ark codes.scp [wav.scp] [wav_vae.scp]   the shard's Kaldi-style outputs
                    (``thinking``: every key, empty value for keys without; absent when no key has one)
    info.json       written last: the shard is complete

A rerun skips keys whose partial result exists, so a killed job resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ualm_tk.data.kaldi_files import byte_order_key, read_kaldi_file, write_kaldi_file

logger = logging.getLogger(__name__)

SHARD_PREFIX = "output."
TEXT_OUTPUTS = ("text", "thinking")
EMPTY_VALUE_OUTPUTS = ("text", "thinking")  # an empty answer / no thinking is a valid result
SPARSE_OUTPUTS = ("thinking",)  # a shard may lack it (none of its keys had any): merged as empty values
AUDIO_OUTPUTS = ("codes.scp", "wav.scp", "wav_vae.scp")


class DecodeShardError(RuntimeError):
    """A shard is missing, incomplete or inconsistent; the message names the shard and keys."""


def shard_keys(keys: Sequence[str], nj: int, job: int) -> List[str]:
    """The ``job``-th (1-based) of ``nj`` contiguous shards of ``keys`` sorted in byte order."""
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    if not 1 <= job <= nj:
        raise ValueError(f"job must be in 1..{nj}, got {job}")
    ordered = sorted(keys, key=byte_order_key)
    n = len(ordered)
    return ordered[(job - 1) * n // nj : job * n // nj]


def key_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the run seed and the example key (independent of sharding)."""
    h = hashlib.sha256(f"{int(seed)}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def check_key_is_filename(key: str, where: str) -> None:
    """Keys name per-key files: refuse keys that are not plain file names."""
    if not key or "/" in key or key.startswith(".") or any(c.isspace() for c in key):
        raise DecodeShardError(f"{where}: key {key!r} cannot name an output file (no '/', no leading '.', no spaces)")


def shard_dir(output_dir: os.PathLike, job: int) -> Path:
    return Path(output_dir) / f"{SHARD_PREFIX}{job}"


def sample_key(key: str, i: int) -> str:
    """Output key of the i-th sample of ``key`` (``key`` itself for the first)."""
    return key if i == 0 else f"{key}_sample{i}"


def write_json_atomic(path: Path, obj: Mapping) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class ShardState:
    """The per-key results of one shard (see module doc); ``modality`` is ``text`` or ``audio``."""

    def __init__(self, directory: os.PathLike, keys: Sequence[str], settings: Mapping, modality: str):
        if modality not in ("text", "audio"):
            raise ValueError(f"modality must be text or audio, got {modality!r}")
        self.dir = Path(directory)
        self.keys = list(keys)
        self.modality = modality
        self.partial = self.dir / "partial"
        for k in self.keys:
            check_key_is_filename(k, str(self.dir))
        self.partial.mkdir(parents=True, exist_ok=True)
        self._claim(settings)

    def _claim(self, settings: Mapping) -> None:
        """Write keys + settings, or check that a previous run used the same ones."""
        kfile, sfile = self.dir / "keys", self.dir / "settings.json"
        text = "".join(k + "\n" for k in self.keys)
        want = json.loads(json.dumps(dict(settings, modality=self.modality), sort_keys=True))
        if kfile.is_file():
            if kfile.read_text(encoding="utf-8") != text:
                raise DecodeShardError(
                    f"{kfile}: a previous run decoded other keys into this directory (other --nj/--job/--max_examples "
                    f"or data.json); remove {self.dir} or use another --output_dir"
                )
            old = json.loads(sfile.read_text(encoding="utf-8")) if sfile.is_file() else {}
            diff = sorted(k for k in set(old) | set(want) if old.get(k) != want.get(k))
            if diff:
                raise DecodeShardError(
                    f"{sfile}: a previous run used other settings ({', '.join(f'{k}: {old.get(k)!r} -> {want.get(k)!r}' for k in diff)}); "
                    f"results would be mixed: remove {self.dir} or use another --output_dir"
                )
            return
        tmp = kfile.with_name(f".keys.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        write_json_atomic(sfile, want)
        os.replace(tmp, kfile)

    # ------------------------------------------------------------------ per key
    def result_path(self, key: str) -> Path:
        return self.partial / (f"{key}.txt" if self.modality == "text" else f"{key}.npz")

    def is_done(self, key: str) -> bool:
        return self.result_path(key).is_file()

    def pending(self) -> List[str]:
        return [k for k in self.keys if not self.is_done(k)]

    def thinking_path(self, key: str) -> Path:
        return self.dir / "partial_thinking" / f"{key}.txt"

    def save_text(self, key: str, text: str, thinking: Optional[str] = None) -> None:
        """The key's answer (whitespace collapsed to one line); ``thinking`` (the segments before
        the answer) is written first, since the answer file marks the key done."""
        t = self.thinking_path(key)
        if thinking is not None:
            t.parent.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(t, " ".join(thinking.split()))
        else:
            t.unlink(missing_ok=True)  # left by a killed run that decoded this key differently
        _write_text_atomic(self.result_path(key), " ".join(text.split()))

    def save_codes(self, key: str, samples: Sequence[np.ndarray]) -> None:
        """One ``codes [T,K]`` int16 array per sample, in one file written atomically AFTER the
        key's wavs: its existence marks the key done."""
        p = self.result_path(key)
        tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, *[np.ascontiguousarray(c, dtype=np.int16) for c in samples])
        os.replace(tmp, p)

    def load_codes(self, key: str) -> List[np.ndarray]:
        with np.load(self.result_path(key)) as z:
            return [z[f"arr_{i}"] for i in range(len(z.files))]

    # ------------------------------------------------------------------ shard outputs
    def finalize(self, info: Mapping, wav_dirs: Sequence[str] = ()) -> Dict[str, int]:
        """Assemble the shard's Kaldi-style files from the per-key results; write info.json last."""
        missing = self.pending()
        if missing:
            raise DecodeShardError(f"{self.dir}: {len(missing)} key(s) not decoded: {', '.join(missing[:5])}")
        counts: Dict[str, int] = {}
        if self.modality == "text":
            entries = {k: self.result_path(k).read_text(encoding="utf-8") for k in self.keys}
            write_kaldi_file(self.dir / "text", entries)
            counts["text"] = len(entries)
            counts["empty"] = sum(1 for v in entries.values() if not v)
            thinking = {k: self.thinking_path(k).read_text(encoding="utf-8") for k in self.keys
                        if self.thinking_path(k).is_file()}
            if thinking:
                write_kaldi_file(self.dir / "thinking", {k: thinking.get(k, "") for k in self.keys})
                counts["thinking"] = len(thinking)
        else:
            import kaldiio

            ark, scp = self.dir / "codes.ark", self.dir / "codes.scp"
            with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}", write_function="numpy") as wr:
                for k in sorted(self.keys, key=byte_order_key):
                    for i, c in enumerate(self.load_codes(k)):  # [T,K] int16 per sample
                        wr(sample_key(k, i), c)
            # kaldiio writes in the order given (byte order); re-write through the strict writer
            write_kaldi_file(scp, read_kaldi_file(scp, check_sorted=False))
            counts["codes"] = len(read_kaldi_file(scp))
            for name in wav_dirs:
                entries = {}
                for k in self.keys:
                    for f in sorted((self.dir / name).glob(f"{_glob_escape(k)}*.wav")):
                        if f.stem == k or f.stem.startswith(f"{k}_sample"):
                            entries[f.stem] = str(f)
                write_kaldi_file(self.dir / f"{name}.scp", entries)
                counts[name] = len(entries)
        write_json_atomic(self.dir / "info.json", dict(info, num_keys=len(self.keys), counts=counts))
        return counts


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _glob_escape(s: str) -> str:
    import glob

    return glob.escape(s)


# ============================================================================ merging
def merge_shards(output_dir: os.PathLike, nj: int) -> Tuple[str, Dict[str, int]]:
    """Merge ``output.1..nj`` into ``output_dir`` (text [+ thinking] or codes.scp/wav.scp/wav_vae.scp).

    An output must be in every shard or in none, except ``thinking``: a shard none of whose keys
    had thinking has no such file, and its keys get empty values.

    Returns ``(modality, {file: entries})``. Raises :class:`DecodeShardError` naming the first
    missing or incomplete shard (and a few of its missing keys) or an inconsistency.
    """
    out = Path(output_dir)
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    problems, infos = [], []
    for job in range(1, nj + 1):
        d = shard_dir(out, job)
        if not (d / "keys").is_file():
            problems.append(f"{d}: missing (job {job} never started)")
            continue
        keys = (d / "keys").read_text(encoding="utf-8").split()
        if not (d / "info.json").is_file():
            settings = json.loads((d / "settings.json").read_text(encoding="utf-8"))
            suffix = ".txt" if settings.get("modality") == "text" else ".npz"
            missing = [k for k in keys if not (d / "partial" / f"{k}{suffix}").is_file()]
            problems.append(
                f"{d}: incomplete, {len(missing)} of {len(keys)} keys not decoded"
                + (f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if missing else " (outputs not assembled)")
                + f"; rerun job {job} (it resumes)"
            )
            continue
        info = json.loads((d / "info.json").read_text(encoding="utf-8"))
        if info.get("nj") != nj or info.get("job") != job:
            problems.append(f"{d}/info.json: written by job {info.get('job')} of nj={info.get('nj')}, expected job {job} of {nj}")
            continue
        infos.append((d, keys, info))
    extra = sorted(p.name for p in out.glob(f"{SHARD_PREFIX}*") if p.is_dir() and p.name[len(SHARD_PREFIX):].isdigit()
                   and int(p.name[len(SHARD_PREFIX):]) > nj)
    if extra:
        problems.append(f"{out}: shard dirs beyond --nj {nj}: {', '.join(extra)} (decoded with another nj?)")
    if problems:
        raise DecodeShardError("cannot merge:\n  " + "\n  ".join(problems))
    modalities = {info["modality"] for _, _, info in infos}
    tasks = {info.get("task") for _, _, info in infos}
    if len(modalities) != 1 or len(tasks) != 1:
        raise DecodeShardError(f"{out}: shards disagree on task/modality: {sorted(map(str, tasks))} {sorted(modalities)}")
    modality = modalities.pop()
    names = TEXT_OUTPUTS if modality == "text" else AUDIO_OUTPUTS
    counts: Dict[str, int] = {}
    seen: Dict[str, Path] = {}
    for d, keys, _ in infos:
        for k in keys:
            if k in seen:
                raise DecodeShardError(f"key '{k}' is in both {seen[k]} and {d}")
            seen[k] = d
    for name in names:
        present = [(d / name).is_file() for d, _, _ in infos]
        if not any(present):
            continue
        if not all(present) and name not in SPARSE_OUTPUTS:
            lacking = [str(d) for (d, _, _), p in zip(infos, present) if not p]
            raise DecodeShardError(f"{name}: missing in {', '.join(lacking[:5])} but present in other shards")
        merged: Dict[str, str] = {}
        for (d, keys, _), has in zip(infos, present):
            if not has:  # a sparse output none of this shard's keys had
                merged.update((k, "") for k in keys)
                continue
            entries = read_kaldi_file(d / name, allow_empty_value=(name in EMPTY_VALUE_OUTPUTS))
            lost = [k for k in keys if k not in entries]
            if lost:
                raise DecodeShardError(f"{d / name}: {len(lost)} key(s) of the shard missing: {', '.join(lost[:5])}")
            merged.update(entries)
        write_kaldi_file(out / name, merged)
        counts[name] = len(merged)
    return modality, counts
