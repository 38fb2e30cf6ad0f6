"""Reading and writing Kaldi-style ``<key> <value>`` files.

The contract every data directory follows:

* one entry per line, ``<key><space><value>``; keys contain no whitespace;
* keys are unique and sorted in byte order (what ``LC_ALL=C sort`` gives);
* files are UTF-8.

``read_kaldi_file`` is strict and raises :class:`KaldiFileError` naming the file, the
line number and the key; it never silently drops or reorders entries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Tuple, Union

PathLike = Union[str, os.PathLike]


class KaldiFileError(ValueError):
    """A Kaldi-style file breaks the contract; the message names file, line and key."""

    def __init__(self, path: PathLike, lineno: int, key: str, problem: str):
        self.path = str(path)
        self.lineno = lineno
        self.key = key
        self.problem = problem
        where = f"{self.path}:{lineno}" if lineno > 0 else self.path
        keypart = f" (key '{key}')" if key else ""
        super().__init__(f"{where}{keypart}: {problem}")


def byte_order_key(key: str) -> bytes:
    """Sort key equal to ``LC_ALL=C sort`` order."""
    return key.encode("utf-8")


def iter_kaldi_lines(
    path: PathLike, allow_empty_value: bool = False
) -> Iterator[Tuple[int, str, str]]:
    """Yield ``(lineno, key, value)`` for every line; raise on malformed lines or bad UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise KaldiFileError(
                    path, lineno, "", f"not valid UTF-8 (byte offset {e.start} of the line)"
                ) from None
            line = line.rstrip("\n").rstrip("\r")
            if line.strip() == "":
                raise KaldiFileError(path, lineno, "", "empty line")
            if line[0].isspace():
                raise KaldiFileError(path, lineno, "", "line starts with whitespace (no key)")
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) == 2 else ""
            if value == "" and not allow_empty_value:
                raise KaldiFileError(path, lineno, key, "empty value")
            yield lineno, key, value


def read_kaldi_file(
    path: PathLike, allow_empty_value: bool = False, check_sorted: bool = True
) -> Dict[str, str]:
    """Read a whole file into an (insertion-ordered) dict, enforcing the contract."""
    out: Dict[str, str] = {}
    first_line: Dict[str, int] = {}
    prev_key = None
    prev_lineno = 0
    for lineno, key, value in iter_kaldi_lines(path, allow_empty_value):
        if key in out:
            raise KaldiFileError(
                path, lineno, key, f"duplicate key (first seen on line {first_line[key]})"
            )
        if check_sorted and prev_key is not None:
            if byte_order_key(key) < byte_order_key(prev_key):
                raise KaldiFileError(
                    path,
                    lineno,
                    key,
                    f"keys not sorted: '{key}' after '{prev_key}' (line {prev_lineno}); "
                    "sort with LC_ALL=C sort",
                )
        out[key] = value
        first_line[key] = lineno
        prev_key, prev_lineno = key, lineno
    return out


def write_kaldi_file(path: PathLike, entries: Union[Mapping[str, str], Iterable[Tuple[str, str]]]) -> None:
    """Write entries sorted in byte order, atomically (temp file + rename).

    Raises ``ValueError`` for keys with whitespace, empty keys, values with newlines and
    duplicate keys, so a writer can never produce a file that the reader rejects.
    """
    items: List[Tuple[str, str]] = list(entries.items() if isinstance(entries, Mapping) else entries)
    seen = set()
    for key, value in items:
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"{path}: bad key {key!r}: keys must be non-empty without whitespace")
        if key in seen:
            raise ValueError(f"{path}: duplicate key {key!r}")
        seen.add(key)
        if "\n" in str(value) or "\r" in str(value):
            raise ValueError(f"{path}: value of key {key!r} contains a newline")
    items.sort(key=lambda kv: byte_order_key(kv[0]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for key, value in items:
            f.write(f"{key} {value}\n")
    os.replace(tmp, path)
