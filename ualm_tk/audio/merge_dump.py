"""Merging the shard outputs of stage 2 into ``dump/audio/<set>/``.

Takes the source data directory (stage 1) and the shard directories written by
:mod:`ualm_tk.audio.formatter`, and writes a data directory that holds

* ``wav.scp`` (formatted copies), ``utt2num_samples``, ``master.scp`` (the original paths),
* every other file of the source restricted to the kept utterances (``spk2utt`` rebuilt,
  ``qa/`` restricted to questions about kept utterances, ``text_only/`` copied whole),
* ``rejected`` (``<key> <reason>``) and ``rejected_report.md``.

Every key of the source must appear in exactly one shard, kept or rejected; otherwise the
merge fails and names the keys (a shard did not finish or was not given).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Set

from ualm_tk.audio.checks import REASON_CATEGORIES, reason_category
from ualm_tk.audio.layout import SHARD_FILES
from ualm_tk.data.kaldi_files import KaldiFileError, byte_order_key, read_kaldi_file, write_kaldi_file
from ualm_tk.data.validate import CLIP_FILES, validate_data_dir

logger = logging.getLogger(__name__)

# written by the merge itself, never copied from the source
OWN_FILES = {"wav.scp", "utt2num_samples", "master.scp", "rejected", "rejected_report.md", "spk2utt"}
MAX_NAMED = 10


class MergeError(RuntimeError):
    """The shard outputs cannot be merged; the message names the part, file and keys."""


@dataclass
class MergeSummary:
    total: int = 0
    kept: int = 0
    rejected: Dict[str, str] = field(default_factory=dict)  # key -> reason
    qa_total: int = 0
    qa_kept: int = 0

    def by_reason(self) -> Counter:
        return Counter(reason_category(r) for r in self.rejected.values())

    def line(self) -> str:
        counts = self.by_reason()
        order = [c for c in REASON_CATEGORIES if c in counts] + sorted(c for c in counts if c not in REASON_CATEGORIES)
        by = ", ".join(f"{c}={counts[c]}" for c in order) or "none"
        return f"kept {self.kept} of {self.total}, rejected {len(self.rejected)}: by reason {by}"


def _names(keys: Sequence[str]) -> str:
    keys = sorted(keys, key=byte_order_key)
    shown = ", ".join(f"'{k}'" for k in keys[:MAX_NAMED])
    return shown + (f" (and {len(keys) - MAX_NAMED} more)" if len(keys) > MAX_NAMED else "")


@dataclass
class _Collected:
    wav: Dict[str, str] = field(default_factory=dict)
    nsamp: Dict[str, str] = field(default_factory=dict)
    master: Dict[str, str] = field(default_factory=dict)
    rejected: Dict[str, str] = field(default_factory=dict)
    owner: Dict[str, str] = field(default_factory=dict)  # key -> part dir


def _collect_parts(parts: Sequence[str], source_wav: Dict[str, str], data_dir: str) -> _Collected:
    out = _Collected()
    for part in parts:
        lists = {}
        for name in SHARD_FILES:
            path = os.path.join(part, name)
            if not os.path.isfile(path):
                raise MergeError(f"{path}: missing: the shard in {part} did not finish (see its job log)")
            lists[name] = read_kaldi_file(path)
        wav, nsamp, master, rej = (lists[n] for n in ("wav.scp", "utt2num_samples", "master.scp", "rejected"))
        for name, d in (("utt2num_samples", nsamp), ("master.scp", master)):
            if set(d) != set(wav):
                diff = set(wav) ^ set(d)
                raise MergeError(f"{part}: {name} and wav.scp hold different keys: {_names(list(diff))}")
        both = set(wav) & set(rej)
        if both:
            raise MergeError(f"{part}: key(s) both kept and rejected: {_names(list(both))}")
        for key in list(wav) + list(rej):
            if key in out.owner:
                raise MergeError(f"key '{key}' is in two parts: {out.owner[key]} and {part}")
            if key not in source_wav:
                raise MergeError(f"{part}: key '{key}' is not in {data_dir}/wav.scp (part of another set?)")
            out.owner[key] = part
        for key, src in master.items():
            if src != source_wav[key]:
                raise MergeError(
                    f"{part}/master.scp: key '{key}': formatted from {src}, but {data_dir}/wav.scp has "
                    f"{source_wav[key]} (stale shard? re-run stage 2)"
                )
        out.wav.update(wav)
        out.nsamp.update(nsamp)
        out.master.update(master)
        out.rejected.update(rej)
    missing = [k for k in source_wav if k not in out.owner]
    if missing:
        raise MergeError(
            f"{len(missing)} key(s) of {data_dir}/wav.scp are in no part (a shard did not finish or "
            f"was not given): {_names(missing)}"
        )
    return out


def _restrict_file(src: Path, dst: Path, keep: Set[str], universe: Set[str]) -> bool:
    """Write ``src`` restricted to ``keep`` if its keys are utterance keys; else copy it whole.

    Returns True when the file was restricted.
    """
    try:
        data = read_kaldi_file(src)
    except KaldiFileError as e:
        logger.warning("%s: not a Kaldi file (%s); copied unchanged", src, e.problem)
        shutil.copyfile(src, dst)
        return False
    if not set(data) <= universe:
        logger.warning("%s: keys are not utterance keys; copied unchanged", src)
        shutil.copyfile(src, dst)
        return False
    write_kaldi_file(dst, [(k, v) for k, v in data.items() if k in keep])
    return True


def _write_spk2utt(utt2spk: Dict[str, str], dst: Path) -> None:
    spk2utt: Dict[str, List[str]] = defaultdict(list)
    for utt, spk in utt2spk.items():
        spk2utt[spk].append(utt)
    write_kaldi_file(dst, [(s, " ".join(sorted(u, key=byte_order_key))) for s, u in spk2utt.items()])


def _write_report(path: Path, data_dir: str, summary: MergeSummary, master: Dict[str, str]) -> None:
    counts = summary.by_reason()
    lines = [f"# Rejected clips: {data_dir}", "", f"{summary.line()}."]
    if counts:
        lines += ["", "| reason | clips |", "|---|---|"]
        lines += [f"| {c} | {n} |" for c, n in sorted(counts.items(), key=lambda cn: (-cn[1], cn[0]))]
    else:
        lines += ["", "No clip was rejected."]
    by_cat: Dict[str, List[str]] = defaultdict(list)
    for key, reason in summary.rejected.items():
        by_cat[reason_category(reason)].append(key)
    for cat in sorted(by_cat, key=lambda c: (-counts[c], c)):
        lines += ["", f"## {cat} ({counts[cat]})", ""]
        for key in sorted(by_cat[cat], key=byte_order_key):
            lines.append(f"- `{key}`: {summary.rejected[key]} (master: `{master[key]}`)")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def merge_audio_dump(data_dir: os.PathLike, parts: Sequence[os.PathLike], out_dir: os.PathLike) -> MergeSummary:
    """Merge shard outputs ``parts`` of ``data_dir`` into ``out_dir``; raises :class:`MergeError`."""
    data_dir, out_dir = str(data_dir), Path(out_dir)
    if not parts:
        raise MergeError("no parts given")
    if os.path.realpath(data_dir) == os.path.realpath(out_dir):
        raise MergeError(f"--out_dir {out_dir} is the source data dir; write the dump elsewhere")
    problems = validate_data_dir(data_dir, check_audio_exists=False).problems
    if problems:
        shown = "\n".join(str(p) for p in problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise MergeError(f"{data_dir}: the source data dir is invalid ({len(problems)} problem(s)):\n{shown}{more}")
    source_wav = read_kaldi_file(os.path.join(data_dir, "wav.scp"))
    got = _collect_parts([str(p) for p in parts], source_wav, data_dir)
    kept = set(got.wav)
    universe = set(source_wav)
    summary = MergeSummary(total=len(source_wav), kept=len(kept), rejected=got.rejected)

    out_dir.mkdir(parents=True, exist_ok=True)
    src_root = Path(data_dir)
    for entry in sorted(src_root.iterdir()):
        if entry.is_dir():
            if entry.name not in ("qa", "text_only"):
                logger.warning("%s: unknown subdirectory; not copied", entry)
            continue
        if entry.name in OWN_FILES:
            continue
        restricted = _restrict_file(entry, out_dir / entry.name, kept, universe)
        if not restricted and entry.name in CLIP_FILES:  # validated above, so this cannot happen
            raise MergeError(f"{entry}: clip-level file could not be restricted to the kept keys")
    if (src_root / "utt2spk").is_file():
        _write_spk2utt(read_kaldi_file(out_dir / "utt2spk"), out_dir / "spk2utt")

    qa_src = src_root / "qa"
    if qa_src.is_dir():
        qa2utt = read_kaldi_file(qa_src / "qa2utt")
        qa_keep = {q for q, utt in qa2utt.items() if utt in kept}
        summary.qa_total, summary.qa_kept = len(qa2utt), len(qa_keep)
        (out_dir / "qa").mkdir(exist_ok=True)
        for entry in sorted(qa_src.iterdir()):
            if entry.is_file():
                _restrict_file(entry, out_dir / "qa" / entry.name, qa_keep, set(qa2utt))
            else:
                logger.warning("%s: unknown subdirectory; not copied", entry)
    to_src = src_root / "text_only"
    if to_src.is_dir():
        (out_dir / "text_only").mkdir(exist_ok=True)
        for entry in sorted(to_src.iterdir()):
            if entry.is_file():
                shutil.copyfile(entry, out_dir / "text_only" / entry.name)

    write_kaldi_file(out_dir / "utt2num_samples", got.nsamp)
    write_kaldi_file(out_dir / "master.scp", got.master)
    write_kaldi_file(out_dir / "rejected", got.rejected)
    _write_report(out_dir / "rejected_report.md", data_dir, summary, source_wav)
    write_kaldi_file(out_dir / "wav.scp", got.wav)
    return summary
