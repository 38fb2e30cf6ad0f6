"""Checking a Kaldi-style data directory (``data/<set>/`` or ``dump/audio/<set>/``) against the contract.

Unlike :func:`ualm_tk.data.kaldi_files.read_kaldi_file`, which stops at the first problem, the
validator collects every problem in every file so one run lists all that must be fixed. Each
problem names the file, the line (0 for whole-file problems) and the key::

    data/train/text:12: key 'utt0012': empty caption

Known clip-level files (one line per utterance, all with the same key set): ``wav.scp``, ``text``,
``utt2spk``, ``utt2category``, ``metadata``, ``rich_caption``, ``utt2num_samples``, ``master.scp``;
plus ``spk2utt`` (speaker keys), ``rejected`` (keys that were dropped), and the subdirectories
``qa/`` (``question``, ``answer``, ``qtype``, ``qa2utt``) and ``text_only/`` (``question``,
``answer``, ``qtype``, optional ``problem_id`` and ``solution``). Any other file is reported as a
warning, not an error.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from ualm_tk.data.kaldi_files import KaldiFileError, byte_order_key, read_kaldi_file

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    """One violation of the data-dir contract."""

    file: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    key: str  # "" when no key is involved
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        keypart = f" key '{self.key}':" if self.key else ""
        return f"{where}:{keypart} {self.problem}"


class DataDirError(ValueError):
    """Raised by :func:`check_data_dir`; holds every problem found."""

    def __init__(self, data_dir: str, problems: List[Problem]):
        self.data_dir = data_dir
        self.problems = problems
        lines = "\n".join(str(p) for p in problems)
        super().__init__(f"{data_dir}: {len(problems)} problem(s):\n{lines}")


@dataclass
class ValidationReport:
    data_dir: str
    problems: List[Problem] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    num_utts: int = 0
    files: List[str] = field(default_factory=list)  # checked files, relative to data_dir
    counts: Dict[str, int] = field(default_factory=dict)  # subdir -> number of entries

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        extra = "".join(f", {d}/: {n} entries" for d, n in sorted(self.counts.items()))
        return f"{self.data_dir}: {self.num_utts} utterances{extra}, files: {' '.join(self.files)}"


# ----------------------------------------------------------------------------------------------
# Reading that collects problems instead of stopping at the first one


@dataclass
class ScannedFile:
    path: str
    entries: Dict[str, Tuple[int, str]]  # key -> (line, value); value "" when it was empty


def _scan_tolerant(path: str, problems: List[Problem], empty_value: str) -> Dict[str, Tuple[int, str]]:
    """Line-by-line scan applying the same rules as ``read_kaldi_file`` but collecting every violation.

    Lines that are malformed (empty, no key, duplicate) are skipped; keys with an empty or
    badly encoded value and out-of-order keys are kept so later checks do not cascade.
    """
    entries: Dict[str, Tuple[int, str]] = {}
    prev_key: Optional[str] = None
    prev_line = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line = raw.decode("utf-8", errors="replace")
                key = line.split(maxsplit=1)[0] if line.strip() and not line[0].isspace() else ""
                problems.append(Problem(path, lineno, key, f"not valid UTF-8 (byte offset {e.start} of the line)"))
            line = line.rstrip("\n").rstrip("\r")
            if line.strip() == "":
                problems.append(Problem(path, lineno, "", "empty line"))
                continue
            if line[0].isspace():
                problems.append(Problem(path, lineno, "", "line starts with whitespace (no key)"))
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) == 2 else ""
            if value == "":
                problems.append(Problem(path, lineno, key, empty_value))
            if key in entries:
                problems.append(
                    Problem(path, lineno, key, f"duplicate key (first seen on line {entries[key][0]})")
                )
                continue
            if prev_key is not None and byte_order_key(key) < byte_order_key(prev_key):
                problems.append(
                    Problem(
                        path, lineno, key,
                        f"keys not sorted: '{key}' after '{prev_key}' (line {prev_line}); sort with LC_ALL=C sort",
                    )
                )
            entries[key] = (lineno, value)
            prev_key, prev_line = key, lineno
    return entries


def scan_kaldi_file(path: str, problems: List[Problem], empty_value: str = "empty value") -> ScannedFile:
    """Read ``path`` strictly; on failure rescan it to collect every problem into ``problems``.

    ``empty_value`` is the problem text for a key without value (e.g. "empty caption").
    """
    try:
        data = read_kaldi_file(path)
        return ScannedFile(path, {k: (i, v) for i, (k, v) in enumerate(data.items(), start=1)})
    except KaldiFileError:
        return ScannedFile(path, _scan_tolerant(path, problems, empty_value))
    except OSError as e:
        problems.append(Problem(path, 0, "", f"cannot read: {e.strerror or e}"))
        return ScannedFile(path, {})


# ----------------------------------------------------------------------------------------------
# Value checks: each returns None or the problem text

ValueCheck = Callable[[str], Optional[str]]


def _caption(value: str) -> Optional[str]:
    if not any(ch.isalnum() for ch in value):
        return f"caption has no letters or digits: {value!r}"
    return None


def _single_token(value: str) -> Optional[str]:
    if len(value.split()) != 1:
        return f"value must be one token without whitespace, got {value!r}"
    return None


def _positive_int(value: str) -> Optional[str]:
    if not re.fullmatch(r"[0-9]+", value) or int(value) <= 0:
        return f"not a positive integer: {value!r}"
    return None


def _json_object(name: str, required: Tuple[str, ...] = ()) -> ValueCheck:
    def check(value: str) -> Optional[str]:
        try:
            obj = json.loads(value)
        except json.JSONDecodeError as e:
            return f"{name} is not valid JSON: {e.msg} at column {e.colno} of the value"
        if not isinstance(obj, dict):
            return f"{name} must be a JSON object, got {type(obj).__name__}"
        missing = [k for k in required if k not in obj]
        if missing:
            return f"{name} lacks required field(s) {', '.join(repr(k) for k in missing)}"
        return None

    return check


def _audio_path(value: str) -> Optional[str]:
    if value.endswith("|"):
        return "pipe commands are not supported; wav.scp must hold file paths"
    if not os.path.exists(value):
        rel = "" if os.path.isabs(value) else f" (relative to the current directory {os.getcwd()})"
        return f"audio file does not exist: {value}{rel}"
    if not os.path.isfile(value):
        return f"audio path is not a regular file: {value}"
    return None


# clip-level files: name -> value check (None: only non-empty)
CLIP_FILES: Dict[str, Optional[ValueCheck]] = {
    "wav.scp": None,  # existence checked on request
    "text": _caption,
    "utt2spk": _single_token,
    "utt2category": None,
    "metadata": _json_object("metadata"),
    "rich_caption": _json_object("rich_caption", ("keywords", "layout", "description")),
    "utt2num_samples": _positive_int,
    "master.scp": None,
}
REQUIRED_CLIP_FILES = ("wav.scp", "text")
QA_FILES: Dict[str, Optional[ValueCheck]] = {
    "question": None,
    "answer": None,
    "qtype": _single_token,
    "qa2utt": _single_token,
}
TEXT_ONLY_FILES: Dict[str, Optional[ValueCheck]] = {
    "question": None,
    "answer": None,
    "qtype": _single_token,
    "problem_id": _single_token,  # optional: the identity of a generated problem (e.g. add:7:5)
    "solution": None,  # optional: a one-line worked solution (the assistant's <eot> segment before the answer)
}
REQUIRED_TEXT_ONLY_FILES = ("question", "answer", "qtype")
# files that are known but are not Kaldi files, or are checked separately
OTHER_KNOWN_FILES = {"spk2utt", "rejected", "rejected_report.md"}
# subdirectories that stage scripts create next to the lists (shard outputs, logs, splits)
IGNORED_DIR_PATTERN = re.compile(r"^(data|log|logs|split.*)$")
QA_KEY_PATTERN = re.compile(r"^(?P<utt>.+)-q[0-9]+$")


def _examples(keys: Iterable[str]) -> str:
    keys = sorted(keys, key=byte_order_key)
    shown = ", ".join(f"'{k}'" for k in keys[:MAX_EXAMPLES])
    more = f" (and {len(keys) - MAX_EXAMPLES} more)" if len(keys) > MAX_EXAMPLES else ""
    return shown + more


class _DirChecker:
    def __init__(self, data_dir: str, check_audio_exists: bool):
        self.root = data_dir
        self.check_audio_exists = check_audio_exists
        self.report = ValidationReport(data_dir=data_dir)

    @property
    def problems(self) -> List[Problem]:
        return self.report.problems

    def _check_group(
        self, subdir: str, specs: Dict[str, Optional[ValueCheck]], required: Iterable[str], extra_known: Set[str]
    ) -> Dict[str, ScannedFile]:
        """Scan the known files of one directory, check values and key-set agreement."""
        d = os.path.join(self.root, subdir) if subdir else self.root
        prefix = f"{subdir}/" if subdir else ""
        present: Dict[str, ScannedFile] = {}
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if os.path.isdir(path):
                if subdir or name not in ("qa", "text_only"):
                    if not IGNORED_DIR_PATTERN.match(name):
                        self.report.warnings.append(f"{path}: unknown directory (not checked)")
                continue
            if name in specs:
                empty = "empty caption" if name == "text" else "empty value"
                present[name] = scan_kaldi_file(path, self.problems, empty)
                self.report.files.append(prefix + name)
            elif name not in extra_known:
                self.report.warnings.append(f"{path}: unknown file (not checked)")
        for name in required:
            if name not in present:
                self.problems.append(Problem(os.path.join(d, name), 0, "", "required file is missing"))
        for name, scanned in present.items():
            check = specs[name]
            if name == "wav.scp" and self.check_audio_exists:
                check = _audio_path
            if check is None:
                continue
            for key, (line, value) in scanned.entries.items():
                if value:
                    msg = check(value)
                    if msg:
                        self.problems.append(Problem(scanned.path, line, key, msg))
        self._check_key_sets(present, [n for n in specs if n in present])
        return present

    def _check_key_sets(self, present: Dict[str, ScannedFile], order: List[str]) -> None:
        if len(order) < 2:
            return
        ref_name = order[0]
        ref = present[ref_name]
        ref_keys = set(ref.entries)
        for name in order[1:]:
            other = present[name]
            keys = set(other.entries)
            missing = ref_keys - keys
            extra = keys - ref_keys
            if missing:
                self.problems.append(Problem(
                    other.path, 0, "",
                    f"key sets differ: {len(missing)} key(s) of {ref.path} missing from {other.path}: "
                    f"{_examples(missing)}",
                ))
            if extra:
                self.problems.append(Problem(
                    other.path, 0, "",
                    f"key sets differ: {len(extra)} key(s) of {other.path} missing from {ref.path}: "
                    f"{_examples(extra)}",
                ))

    def _check_spk2utt(self, utt2spk: Optional[ScannedFile]) -> None:
        path = os.path.join(self.root, "spk2utt")
        if not os.path.isfile(path):
            return
        self.report.files.append("spk2utt")
        scanned = scan_kaldi_file(path, self.problems)
        if utt2spk is None:
            self.problems.append(Problem(path, 0, "", "spk2utt given without utt2spk"))
            return
        seen: Set[str] = set()
        for spk, (line, value) in scanned.entries.items():
            for utt in value.split():
                got = utt2spk.entries.get(utt)
                if got is None:
                    self.problems.append(Problem(path, line, spk, f"utterance '{utt}' is not in {utt2spk.path}"))
                elif got[1] and got[1] != spk:  # an empty value is reported by the scan
                    self.problems.append(Problem(
                        path, line, spk, f"utterance '{utt}' belongs to speaker '{got[1]}' in {utt2spk.path}"
                    ))
                seen.add(utt)
        unlisted = set(utt2spk.entries) - seen
        if unlisted:
            self.problems.append(Problem(
                path, 0, "", f"{len(unlisted)} utterance(s) of {utt2spk.path} not listed: {_examples(unlisted)}"
            ))

    def _check_rejected(self, utts: Set[str], ref_path: str) -> None:
        path = os.path.join(self.root, "rejected")
        if not os.path.isfile(path):
            return
        self.report.files.append("rejected")
        scanned = scan_kaldi_file(path, self.problems)
        for key, (line, _) in scanned.entries.items():
            if key in utts:
                self.problems.append(Problem(path, line, key, f"key is rejected but also present in {ref_path}"))

    def _check_qa(self, utts: Set[str], ref_path: str) -> None:
        present = self._check_group("qa", QA_FILES, QA_FILES.keys(), set())
        qa2utt = present.get("qa2utt")
        if qa2utt is None:
            return
        for key, (line, utt) in qa2utt.entries.items():
            if not utt:
                continue
            if utt not in utts:
                self.problems.append(Problem(qa2utt.path, line, key, f"utterance '{utt}' is not a key of {ref_path}"))
            m = QA_KEY_PATTERN.match(key)
            if m is None or m.group("utt") != utt:
                self.problems.append(Problem(
                    qa2utt.path, line, key, f"key does not have the form '<utt>-q<NN>' for its utterance '{utt}'"
                ))
        self.report.counts["qa"] = len(qa2utt.entries)

    def run(self) -> ValidationReport:
        if not os.path.isdir(self.root):
            self.problems.append(Problem(self.root, 0, "", "not a directory"))
            return self.report
        present = self._check_group("", CLIP_FILES, REQUIRED_CLIP_FILES, OTHER_KNOWN_FILES)
        ref = next((present[n] for n in CLIP_FILES if n in present), None)
        utts = set(ref.entries) if ref else set()
        ref_path = ref.path if ref else os.path.join(self.root, "wav.scp")
        self.report.num_utts = len(utts)
        if ref is not None and not utts:
            self.problems.append(Problem(ref.path, 0, "", "no utterances"))
        self._check_spk2utt(present.get("utt2spk"))
        self._check_rejected(utts, ref_path)
        if os.path.isdir(os.path.join(self.root, "qa")):
            self._check_qa(utts, ref_path)
        if os.path.isdir(os.path.join(self.root, "text_only")):
            tonly = self._check_group("text_only", TEXT_ONLY_FILES, REQUIRED_TEXT_ONLY_FILES, set())
            if "question" in tonly:
                self.report.counts["text_only"] = len(tonly["question"].entries)
        return self.report


def validate_data_dir(data_dir: os.PathLike, check_audio_exists: bool = True) -> ValidationReport:
    """Check every known file of ``data_dir`` (and ``qa/``, ``text_only/``); never raises for bad content."""
    report = _DirChecker(str(data_dir), check_audio_exists).run()
    # file by file, line by line (whole-file problems first); stable for problems of one line
    report.problems.sort(key=lambda p: (p.file, p.line))
    for w in report.warnings:
        logger.warning("%s", w)
    return report


def find_problems(data_dir: os.PathLike, check_audio_exists: bool = True) -> List[Problem]:
    """The list of every problem in ``data_dir`` (empty when it follows the contract)."""
    return validate_data_dir(data_dir, check_audio_exists).problems


def check_data_dir(data_dir: os.PathLike, check_audio_exists: bool = True) -> ValidationReport:
    """Like :func:`validate_data_dir` but raises :class:`DataDirError` listing all problems."""
    report = validate_data_dir(data_dir, check_audio_exists)
    if report.problems:
        raise DataDirError(str(data_dir), report.problems)
    return report
