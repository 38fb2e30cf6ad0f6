"""The global token layout: ``[specials 0..255 | text block | audio stream 0 | ... | audio stream K-1]``.

``TokenLayout(text_vocab, num_codebooks=K, codebook_size=N)`` fixes every id:

* specials: ids ``0 .. 255`` (:mod:`ualm_tk.tokens.specials`);
* text: ids ``256 .. 256+V-1``, text-block-local id ``i`` (the tokenizer's id) -> ``256 + i``;
* audio stream ``k``: ids ``audio_k .. audio_k+N-1`` with ``audio_k = 256 + V + k*N``; code ``c``
  of stream ``k`` -> ``audio_k + c``, named ``<a{k}_{c}>`` in ``token_list``.

On disk (a ``token_dir`` such as ``data/token_list/``, copied into every model directory):

* ``token_list``: one token per line, line ``i`` (0-based) is id ``i``. Characters that would break
  the one-per-line form (whitespace, control characters, backslash) are escaped as ``\\\\`` and
  ``\\uXXXX`` / ``\\UXXXXXXXX``; :func:`escape_token` / :func:`unescape_token` are exact inverses.
  A text token whose name equals a special or audio token name is listed as ``<text:NAME>`` so
  every line is unique (the tokenizer itself is unaffected).
* ``token_bias.json``: the block starts ``{"special": 0, "text": 256, "audio_0": ..., ...}``.

``TokenLayout.load(dir)`` re-reads both, checks they agree with each other and with the special
slots defined in code (a reserved ``<special_NN>`` slot on disk may have been assigned since:
that is compatible; any other difference is an error), and ``check_compatible(other)`` raises
:class:`TokenLayoutMismatch` naming what differs between two layouts (model dir vs data dir).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from typeguard import typechecked

from ualm_tk.tokens.specials import NUM_SPECIAL_SLOTS, SPECIAL_TOKENS, is_reserved_name

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ArrayLike = Union[torch.Tensor, np.ndarray]

TOKEN_LIST = "token_list"
TOKEN_BIAS = "token_bias.json"


class TokenLayoutError(ValueError):
    """A token_list / token_bias.json is malformed or inconsistent."""


class TokenLayoutMismatch(ValueError):
    """Two layouts (e.g. a model directory's and a data directory's) differ."""


def audio_token_name(stream: int, code: int) -> str:
    return f"<a{stream}_{code}>"


def escape_token(token: str) -> str:
    """Make a token safe for one line without whitespace; exact inverse: :func:`unescape_token`."""
    out = []
    for c in token:
        if c == "\\":
            out.append("\\\\")
        elif c.isspace() or not c.isprintable():
            o = ord(c)
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(c)
    return "".join(out)


def unescape_token(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "\\":
            out.append("\\")
            i += 2
        elif nxt == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        elif nxt == "U":
            out.append(chr(int(text[i + 2 : i + 10], 16)))
            i += 10
        else:
            raise ValueError(f"bad escape sequence at character {i} of {text!r}")
    return "".join(out)


class TokenLayout:
    """Block structure and id conversions of the global vocabulary.

    Args:
        text_vocab: the text tokenizer's vocabulary, index = text-block-local id.
        num_codebooks: K, the number of RVQ codebooks (audio streams).
        codebook_size: N, codes per codebook.
    """

    @typechecked
    def __init__(self, text_vocab: Sequence[str], num_codebooks: int, codebook_size: int):
        if num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {num_codebooks}")
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        if len(text_vocab) < 1:
            raise ValueError("text_vocab is empty")
        self.text_vocab: Tuple[str, ...] = tuple(text_vocab)
        self.num_codebooks = int(num_codebooks)
        self.codebook_size = int(codebook_size)
        self.num_specials = NUM_SPECIAL_SLOTS
        self.text_start = NUM_SPECIAL_SLOTS
        self.text_size = len(self.text_vocab)
        self.audio_start = self.text_start + self.text_size
        self.vocab_size = self.audio_start + self.num_codebooks * self.codebook_size
        self._tokens: Optional[List[str]] = None
        self._token_to_id: Optional[Dict[str, int]] = None

    # ------------------------------------------------------------------ blocks
    @property
    def token_bias(self) -> Dict[str, int]:
        """Block starts in id order: special, text, audio_0 .. audio_{K-1}."""
        bias = {"special": 0, "text": self.text_start}
        for k in range(self.num_codebooks):
            bias[f"audio_{k}"] = self.stream_start(k)
        return bias

    def _check_stream(self, stream: int) -> None:
        if not 0 <= stream < self.num_codebooks:
            raise ValueError(f"audio stream {stream} out of range: the layout has K={self.num_codebooks} streams")

    def stream_start(self, stream: int) -> int:
        self._check_stream(stream)
        return self.audio_start + stream * self.codebook_size

    def stream_vocab_range(self, stream: int) -> Tuple[int, int]:
        """``[start, end)`` global ids of audio stream ``stream``'s codebook block."""
        start = self.stream_start(stream)
        return start, start + self.codebook_size

    def text_vocab_range(self) -> Tuple[int, int]:
        return self.text_start, self.audio_start

    # ------------------------------------------------------------------ masks
    def is_special(self, ids: ArrayLike) -> ArrayLike:
        return ids < self.text_start

    def is_text(self, ids: ArrayLike) -> ArrayLike:
        """Mask of ids in the text block (any shape)."""
        return (ids >= self.text_start) & (ids < self.audio_start)

    def is_audio(self, ids: ArrayLike, stream: Optional[int] = None) -> ArrayLike:
        """Mask of ids in audio stream ``stream``'s block, or in any audio block when ``None``."""
        if stream is None:
            return (ids >= self.audio_start) & (ids < self.vocab_size)
        start, end = self.stream_vocab_range(stream)
        return (ids >= start) & (ids < end)

    # ------------------------------------------------------------------ conversions
    def text_to_global(self, ids: Sequence[int]) -> List[int]:
        """Text-block-local ids (the tokenizer's) -> global ids."""
        out = []
        for i in ids:
            if not 0 <= int(i) < self.text_size:
                raise ValueError(f"text id {i} out of range: the text block has {self.text_size} tokens")
            out.append(int(i) + self.text_start)
        return out

    def global_to_text(self, ids: Sequence[int]) -> List[int]:
        out = []
        for i in ids:
            if not self.text_start <= int(i) < self.audio_start:
                raise ValueError(
                    f"id {i} ({self.token(int(i))}) is not a text token "
                    f"(text block is [{self.text_start}, {self.audio_start}))"
                )
            out.append(int(i) - self.text_start)
        return out

    def _stream_offsets(self, ndim: int, dim: int, size: int, like: ArrayLike) -> ArrayLike:
        if size != self.num_codebooks:
            raise ValueError(
                f"codes have {size} codebooks along dim {dim}, the layout has K={self.num_codebooks}"
            )
        shape = [1] * ndim
        shape[dim] = size
        offs = [self.stream_start(k) for k in range(size)]
        if isinstance(like, torch.Tensor):
            return torch.tensor(offs, dtype=like.dtype, device=like.device).reshape(shape)
        return np.asarray(offs, dtype=like.dtype).reshape(shape)

    def audio_to_global(self, codes: ArrayLike, stream: Optional[int] = None, dim: int = -2) -> ArrayLike:
        """Codebook-local codes -> global ids.

        With ``stream=None``, ``codes`` has the K axis at ``dim`` (``codes [B,K,T]`` -> ``dim=-2``,
        ``[K,T]`` -> ``dim=0``, ``seq [B,S,K]`` -> ``dim=-1``) and slice k gets stream k's offset.
        With ``stream=k`` every entry belongs to stream k. Codes outside ``[0, N)`` raise.
        """
        if not _is_integer(codes):
            raise ValueError(f"codes must be an integer array, got dtype {codes.dtype}")
        if codes.numel() if isinstance(codes, torch.Tensor) else codes.size:
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= self.codebook_size:
                raise ValueError(f"codes outside [0, {self.codebook_size}): min {lo}, max {hi}")
        if stream is not None:
            return codes + self.stream_start(stream)
        if codes.ndim == 0:
            raise ValueError("codes must have a codebook axis when stream is None")
        d = dim % codes.ndim
        return codes + self._stream_offsets(codes.ndim, d, codes.shape[d], codes)

    def global_to_audio(self, ids: ArrayLike, stream: Optional[int] = None, dim: int = -2) -> ArrayLike:
        """Inverse of :meth:`audio_to_global`; raises when an id is not in its stream's block."""
        if stream is not None:
            start, end = self.stream_vocab_range(stream)
            bad = (ids < start) | (ids >= end)
            if bool(bad.any()):
                first = int(ids[bad].reshape(-1)[0])
                raise ValueError(
                    f"id {first} ({self.token(first) if 0 <= first < self.vocab_size else 'out of vocab'}) "
                    f"is not in audio stream {stream}'s block [{start}, {end})"
                )
            return ids - start
        d = dim % ids.ndim
        offs = self._stream_offsets(ids.ndim, d, ids.shape[d], ids)
        local = ids - offs
        bad = (local < 0) | (local >= self.codebook_size)
        if bool(bad.any()):
            if isinstance(bad, torch.Tensor):
                idx = [int(i) for i in bad.nonzero()[0]]
            else:
                idx = [int(a[0]) for a in np.nonzero(bad)]
            gid = int(ids[tuple(idx)])
            name = self.token(gid) if 0 <= gid < self.vocab_size else "out of vocab"
            raise ValueError(
                f"id {gid} ({name}) at index {tuple(idx)} is not a code of audio stream {idx[d]} "
                f"(block {self.stream_vocab_range(idx[d])})"
            )
        return local

    # ------------------------------------------------------------------ names
    def _text_name(self, i: int, tok: str, taken: set) -> str:
        if tok in taken:
            tok = f"<text:{tok}>"
        return tok

    @property
    def tokens(self) -> List[str]:
        """Every token name, index = global id (unique)."""
        if self._tokens is None:
            names = list(SPECIAL_TOKENS)
            audio_names = {
                audio_token_name(k, c) for k in range(self.num_codebooks) for c in range(self.codebook_size)
            }
            taken = set(SPECIAL_TOKENS) | audio_names
            seen = set()
            for i, tok in enumerate(self.text_vocab):
                name = self._text_name(i, tok, taken)
                if name in seen or name in taken:
                    raise TokenLayoutError(f"text token {i} {tok!r} is listed twice in the text vocabulary")
                seen.add(name)
                names.append(name)
            for k in range(self.num_codebooks):
                names.extend(audio_token_name(k, c) for c in range(self.codebook_size))
            self._tokens = names
        return self._tokens

    def token(self, gid: int) -> str:
        if not 0 <= gid < self.vocab_size:
            raise ValueError(f"id {gid} out of range [0, {self.vocab_size})")
        return self.tokens[gid]

    def token_id(self, name: str) -> int:
        if self._token_to_id is None:
            self._token_to_id = {t: i for i, t in enumerate(self.tokens)}
        try:
            return self._token_to_id[name]
        except KeyError:
            raise KeyError(f"token {name!r} is not in the token list") from None

    def describe(self) -> str:
        return (
            f"{self.num_specials} specials + {self.text_size} text + {self.num_codebooks} x "
            f"{self.codebook_size} audio = {self.vocab_size} tokens"
        )

    def sha256(self) -> str:
        """Checksum of the token_list contents (recorded in data.json to detect mismatches)."""
        h = hashlib.sha256()
        for t in self.tokens:
            h.update(escape_token(t).encode("utf-8") + b"\n")
        return h.hexdigest()

    # ------------------------------------------------------------------ disk
    def write(self, out_dir: PathLike) -> None:
        """Write ``token_list`` and ``token_bias.json`` into ``out_dir`` (atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / TOKEN_LIST, "".join(escape_token(t) + "\n" for t in self.tokens))
        _atomic_write(out / TOKEN_BIAS, json.dumps(self.token_bias, indent=2) + "\n")
        logger.info("wrote %s and %s: %s", out / TOKEN_LIST, out / TOKEN_BIAS, self.describe())

    @classmethod
    def load(cls, token_dir: PathLike) -> "TokenLayout":
        """Re-read a layout written by :meth:`write`, checking every invariant."""
        d = Path(token_dir)
        list_path, bias_path = d / TOKEN_LIST, d / TOKEN_BIAS
        for p in (list_path, bias_path):
            if not p.is_file():
                raise TokenLayoutError(f"{p}: missing (make it with python -m ualm_tk.bin.make_token_list)")
        with open(list_path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TokenLayoutError(f"{list_path}: not valid UTF-8 (byte {e.start})") from None
        if not text.endswith("\n"):
            raise TokenLayoutError(f"{list_path}: last line has no newline (truncated file?)")
        lines = text[:-1].split("\n")
        try:
            bias = json.loads(bias_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TokenLayoutError(f"{bias_path}: not valid JSON: {e}") from None
        if not isinstance(bias, dict) or bias.get("special") != 0 or "text" not in bias:
            raise TokenLayoutError(f"{bias_path}: expected {{'special': 0, 'text': ..., 'audio_0': ...}}, got {bias}")
        if bias["text"] != NUM_SPECIAL_SLOTS:
            raise TokenLayoutError(f"{bias_path}: text block starts at {bias['text']}, expected {NUM_SPECIAL_SLOTS}")
        k = 0
        starts = []
        while f"audio_{k}" in bias:
            starts.append(int(bias[f"audio_{k}"]))
            k += 1
        extra = set(bias) - {"special", "text"} - {f"audio_{i}" for i in range(k)}
        if k == 0 or extra:
            raise TokenLayoutError(
                f"{bias_path}: keys must be special, text, audio_0..audio_{{K-1}}; got {sorted(bias)}"
            )
        vocab_size = len(lines)
        n = vocab_size - starts[-1]
        text_size = starts[0] - NUM_SPECIAL_SLOTS
        if n < 1 or text_size < 1 or any(b - a != n for a, b in zip(starts, starts[1:])):
            raise TokenLayoutError(
                f"{bias_path}: block starts {starts} do not split {list_path} ({vocab_size} lines) "
                "into equal audio blocks after a non-empty text block"
            )
        for lineno, line in enumerate(lines[:NUM_SPECIAL_SLOTS], start=1):
            slot = lineno - 1
            name = unescape_token(line)
            if name != SPECIAL_TOKENS[slot] and not is_reserved_name(name, slot):
                raise TokenLayoutError(
                    f"{list_path}:{lineno}: special slot {slot} is {name!r} on disk but {SPECIAL_TOKENS[slot]!r} "
                    "in ualm_tk/tokens/specials.py (special ids are append-only; the file was written by "
                    "incompatible code)"
                )
        taken = set(SPECIAL_TOKENS) | {audio_token_name(kk, c) for kk in range(k) for c in range(n)}
        text_vocab = []
        for i, line in enumerate(lines[NUM_SPECIAL_SLOTS : starts[0]]):
            name = unescape_token(line)
            if name.startswith("<text:") and name.endswith(">") and name[6:-1] in taken:
                name = name[6:-1]
            text_vocab.append(name)
        layout = cls(text_vocab, num_codebooks=k, codebook_size=n)
        for gid in range(starts[0], vocab_size):
            if lines[gid] != layout.tokens[gid]:
                raise TokenLayoutError(
                    f"{list_path}:{gid + 1}: expected {layout.tokens[gid]!r} for id {gid}, found {lines[gid]!r}"
                )
        return layout

    # ------------------------------------------------------------------ compatibility
    def check_compatible(self, other: "TokenLayout", names: Tuple[str, str] = ("this layout", "the other")) -> None:
        """Raise :class:`TokenLayoutMismatch` listing every difference from ``other``.

        Reserved special slots that one side has assigned are compatible (append-only).
        """
        a, b = names
        problems = []
        if self.num_codebooks != other.num_codebooks:
            problems.append(f"num_codebooks K: {a} {self.num_codebooks}, {b} {other.num_codebooks}")
        if self.codebook_size != other.codebook_size:
            problems.append(f"codebook_size N: {a} {self.codebook_size}, {b} {other.codebook_size}")
        if self.text_size != other.text_size:
            problems.append(f"text vocabulary size: {a} {self.text_size}, {b} {other.text_size}")
        for i, (x, y) in enumerate(zip(self.text_vocab, other.text_vocab)):
            if x != y:
                problems.append(f"text token {i} (id {i + self.text_start}): {a} {x!r}, {b} {y!r}")
                break
        if problems:
            raise TokenLayoutMismatch("token layouts differ: " + "; ".join(problems))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TokenLayout)
            and self.text_vocab == other.text_vocab
            and self.num_codebooks == other.num_codebooks
            and self.codebook_size == other.codebook_size
        )

    def __repr__(self) -> str:
        return f"TokenLayout({self.describe()})"


def _is_integer(x: ArrayLike) -> bool:
    if isinstance(x, torch.Tensor):
        return not x.dtype.is_floating_point and not x.dtype.is_complex and x.dtype != torch.bool
    return np.issubdtype(np.asarray(x).dtype, np.integer)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)
