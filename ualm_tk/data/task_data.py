"""``data.json``: the examples of one task and set, as stage 4 writes them and stage 5 reads them.

Format (version 1), compact: text as global token ids, audio as references, never code arrays::

    {
      "format": "ualm_task_data", "version": 1,
      "task": "caption_to_audio",
      "num_examples": 2,
      "token_bias": {"special": 0, "text": 256, "audio_0": ..., ...},
      "token_list_sha256": "...",            # of the token_list the ids belong to
      "num_codebooks": 8, "codebook_size": 1024,
      "pattern": "delay",                    # what "length" was computed with
      "codes_layout": "TK",                  # how the referenced code arrays are stored
      "feat_frame_rate": 25.0,               # encoder frames/s for <audio_feats> spans
      "task_marker": false,
      "examples": {
        "<key>": {
          "segments": [                      # ualm_tk.data.task_templates.Segment.to_json()
            {"role": "user", "modality": "text", "ids": [301, 517, ...], "condition": true},
            {"role": "assistant", "modality": "audio", "codes": "dump/codes/train/codes.1.ark:18", "num_frames": 250}
          ],
          "length": 270,                     # S positions with "pattern"
          "meta": {"caption": "a dog barks"} # the source strings (references for scoring), qtype, utt
        }, ...
      }
    }

Examples are sorted by key (byte order). :class:`TaskData` loads and checks a file,
``check_layout`` compares its token layout with a model's, ``render(key, ...)`` gives the
``[S,K]`` tensors through :func:`ualm_tk.data.task_templates.render_example`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

import numpy as np

from ualm_tk.data.kaldi_files import byte_order_key
from ualm_tk.data.task_templates import (
    CodesLoader,
    RenderedExample,
    Segment,
    TaskDataError,
    get_template,
    render_example,
)
from ualm_tk.patterns.abs_pattern import AbsPattern
from ualm_tk.tokens.layout import TokenLayout, TokenLayoutMismatch

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
FORMAT = "ualm_task_data"
VERSION = 1
CODES_LAYOUTS = ("TK", "KT")
_REQUIRED = (
    "task",
    "num_examples",
    "token_bias",
    "token_list_sha256",
    "num_codebooks",
    "codebook_size",
    "pattern",
    "codes_layout",
    "feat_frame_rate",
    "examples",
)


def load_codes(ref: str, codes_layout: str = "TK") -> np.ndarray:
    """Read one kaldiio reference (``file.ark:offset``) -> local codes ``[K,T]`` int64.

    Accepts integer arrays stored with ``kaldiio.WriteHelper(..., write_function="numpy")`` (Kaldi
    arks hold no integer matrices) and Kaldi float matrices whose values are exact integers.
    """
    import kaldiio

    if codes_layout not in CODES_LAYOUTS:
        raise ValueError(f"codes_layout must be one of {CODES_LAYOUTS}, got {codes_layout!r}")
    try:
        arr = np.asarray(kaldiio.load_mat(ref))
    except Exception as e:
        raise TaskDataError(f"cannot read codes {ref}: {e}") from None
    if arr.ndim != 2:
        raise TaskDataError(f"codes {ref}: expected a 2-d [{'T,K' if codes_layout == 'TK' else 'K,T'}] array, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        # Kaldi-native float matrices are accepted when every value is an exact integer
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise TaskDataError(f"codes {ref}: float array with non-integer values (not codec codes)")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TaskDataError(f"codes {ref}: expected integer codes, got dtype {arr.dtype}")
    if codes_layout == "TK":
        arr = arr.T
    return np.ascontiguousarray(arr, dtype=np.int64)


@dataclass
class TaskData:
    """The contents of one data.json (see the module docstring)."""

    task: str
    token_bias: Dict[str, int]
    token_list_sha256: str
    num_codebooks: int
    codebook_size: int
    pattern: str
    codes_layout: str
    feat_frame_rate: float
    examples: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    task_marker: bool = False
    path: Optional[str] = None

    # ------------------------------------------------------------------ access
    @property
    def num_examples(self) -> int:
        return len(self.examples)

    def keys(self) -> List[str]:
        return list(self.examples)

    def segments(self, key: str) -> List[Segment]:
        ex = self._example(key)
        return [Segment.from_json(s, f"{self.path or 'data.json'}: key '{key}' segment {i}") for i, s in enumerate(ex["segments"])]

    def length(self, key: str) -> int:
        return int(self._example(key)["length"])

    def meta(self, key: str) -> Dict[str, str]:
        return dict(self._example(key).get("meta", {}))

    def _example(self, key: str) -> Dict[str, Any]:
        try:
            return self.examples[key]
        except KeyError:
            raise KeyError(f"{self.path or 'data.json'}: no example with key '{key}'") from None

    def codes_loader(self) -> CodesLoader:
        layout = self.codes_layout
        return lambda ref: load_codes(ref, layout)

    def render(
        self, key: str, layout: TokenLayout, pattern: AbsPattern, **kwargs: Any
    ) -> RenderedExample:
        """``tokens [S,K]``, ``loss_mask [S,K]``, spans of example ``key`` (kwargs: see render_example)."""
        return render_example(self.segments(key), layout, pattern, self.codes_loader(), key=key, **kwargs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.examples)

    # ------------------------------------------------------------------ checks
    def check_layout(self, layout: TokenLayout, what: str = "the model's token list") -> None:
        """Raise :class:`TokenLayoutMismatch` when ``layout`` is not the one the ids were made with."""
        where = self.path or "data.json"
        problems = []
        if layout.token_bias != self.token_bias:
            problems.append(f"token_bias {self.token_bias} vs {layout.token_bias}")
        if layout.sha256() != self.token_list_sha256:
            problems.append(f"token_list checksum {self.token_list_sha256[:12]}... vs {layout.sha256()[:12]}...")
        if problems:
            raise TokenLayoutMismatch(f"{where} was built with another token list than {what}: " + "; ".join(problems))

    # ------------------------------------------------------------------ disk
    def to_json(self) -> Dict[str, Any]:
        keys = sorted(self.examples, key=byte_order_key)
        return {
            "format": FORMAT,
            "version": VERSION,
            "task": self.task,
            "num_examples": len(keys),
            "token_bias": self.token_bias,
            "token_list_sha256": self.token_list_sha256,
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "pattern": self.pattern,
            "codes_layout": self.codes_layout,
            "feat_frame_rate": self.feat_frame_rate,
            "task_marker": self.task_marker,
            "examples": {k: self.examples[k] for k in keys},
        }

    def save(self, path: PathLike) -> None:
        """Write atomically (temp file + rename); one example per line for readable diffs."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        d = self.to_json()
        examples = d.pop("examples")
        head = json.dumps(d, ensure_ascii=False)[:-1]
        lines = [f"  {json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for k, v in examples.items()]
        body = head + ', "examples": {\n' + ",\n".join(lines) + "\n}}\n"
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, p)
        self.path = str(p)

    @classmethod
    def load(cls, path: PathLike) -> "TaskData":
        """Read and check a data.json; errors name the file (and the key)."""
        p = str(path)
        if not os.path.isfile(p):
            raise TaskDataError(f"{p}: data.json not found")
        try:
            with open(p, encoding="utf-8") as f:
                d = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TaskDataError(f"{p}: not valid JSON: {e}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise TaskDataError(f"{p}: not a ualm_tk data.json (\"format\": \"{FORMAT}\" missing)")
        if d.get("version") != VERSION:
            raise TaskDataError(f"{p}: version {d.get('version')} is not supported (this code reads {VERSION})")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise TaskDataError(f"{p}: missing field(s) {missing}")
        get_template(d["task"])  # unknown task -> error listing known ones
        if d["codes_layout"] not in CODES_LAYOUTS:
            raise TaskDataError(f"{p}: codes_layout {d['codes_layout']!r} not in {CODES_LAYOUTS}")
        ex = d["examples"]
        if not isinstance(ex, dict):
            raise TaskDataError(f"{p}: \"examples\" must be an object keyed by example key")
        if d["num_examples"] != len(ex):
            raise TaskDataError(f"{p}: num_examples is {d['num_examples']} but {len(ex)} examples are listed (truncated file?)")
        for key, e in ex.items():
            if not isinstance(e, dict) or not isinstance(e.get("segments"), list) or not isinstance(e.get("length"), int):
                raise TaskDataError(f"{p}: key '{key}': an example needs \"segments\" (list) and \"length\" (int)")
            for i, seg in enumerate(e["segments"]):
                if not isinstance(seg, dict):
                    raise TaskDataError(f"{p}: key '{key}' segment {i}: not an object")
                Segment.from_json(seg, f"{p}: key '{key}' segment {i}")
        return cls(
            task=d["task"],
            token_bias={k: int(v) for k, v in d["token_bias"].items()},
            token_list_sha256=d["token_list_sha256"],
            num_codebooks=int(d["num_codebooks"]),
            codebook_size=int(d["codebook_size"]),
            pattern=d["pattern"],
            codes_layout=d["codes_layout"],
            feat_frame_rate=float(d["feat_frame_rate"]),
            examples=ex,
            task_marker=bool(d.get("task_marker", False)),
            path=p,
        )


def length_stats(data: TaskData) -> Mapping[str, float]:
    """Number of examples, total/mean/max positions (for logs and blending by token share)."""
    lens = np.array([e["length"] for e in data.examples.values()], dtype=np.int64)
    if lens.size == 0:
        return {"num_examples": 0, "total": 0, "mean": 0.0, "max": 0}
    return {"num_examples": int(lens.size), "total": int(lens.sum()), "mean": float(lens.mean()), "max": int(lens.max())}


# ============================================================================ building (stage 4)
def _read_optional(path: Path) -> Optional[Dict[str, str]]:
    from ualm_tk.data.kaldi_files import read_kaldi_file

    return read_kaldi_file(path) if path.is_file() else None


def _require(path: Path, why: str) -> Dict[str, str]:
    from ualm_tk.data.kaldi_files import read_kaldi_file

    if not path.is_file():
        raise TaskDataError(f"{path}: missing ({why})")
    return read_kaldi_file(path)


def _lookup(table: Mapping[str, str], key: str, path: PathLike, ex_key: str) -> str:
    try:
        return table[key]
    except KeyError:
        extra = f" (for example '{ex_key}')" if ex_key != key else ""
        raise TaskDataError(f"{path}: no entry for key '{key}'{extra}") from None


def _source_rows(source: str, data_dir: Path) -> List[Dict[str, str]]:
    """Raw string fields of every example of a source, sorted by key."""
    rows: List[Dict[str, str]] = []
    if source == "clips":
        text = _require(data_dir / "text", "captions")
        for key, cap in text.items():
            rows.append({"key": key, "utt": key, "text": cap})
    elif source == "qa":
        q = _require(data_dir / "qa" / "question", "questions")
        a = _require(data_dir / "qa" / "answer", "answers")
        q2u = _require(data_dir / "qa" / "qa2utt", "question -> utterance map")
        qtype = _read_optional(data_dir / "qa" / "qtype") or {}
        for key, question in q.items():
            rows.append({
                "key": key,
                "utt": _lookup(q2u, key, data_dir / "qa" / "qa2utt", key),
                "question": question,
                "answer": _lookup(a, key, data_dir / "qa" / "answer", key),
                **({"qtype": qtype[key]} if key in qtype else {}),
            })
    elif source == "qa_dialog":
        import random

        by_utt: Dict[str, List[Dict[str, str]]] = {}
        for r in _source_rows("qa", data_dir):
            by_utt.setdefault(r["utt"], []).append(r)
        for utt in sorted(by_utt):
            qs = by_utt[utt]
            random.Random(f"qa_dialog:{utt}").shuffle(qs)  # order varies across clips, fixed per clip
            rows.append({
                "key": utt, "utt": utt, "turns": [(r["question"], r["answer"]) for r in qs],
                "qtype": " ".join(r.get("qtype", "?") for r in qs),
            })
    elif source == "text_only":
        q = _require(data_dir / "text_only" / "question", "questions")
        a = _require(data_dir / "text_only" / "answer", "answers")
        qtype = _read_optional(data_dir / "text_only" / "qtype") or {}
        sol_path = data_dir / "text_only" / "solution"
        solution = _read_optional(sol_path)  # optional worked solutions (an assistant <eot> segment)
        for key, question in q.items():
            rows.append({
                "key": key,
                "question": question,
                "answer": _lookup(a, key, data_dir / "text_only" / "answer", key),
                **({"qtype": qtype[key]} if key in qtype else {}),
                **({"solution": _lookup(solution, key, sol_path, key)} if solution is not None else {}),
            })
    else:
        raise TaskDataError(f"unknown example source {source!r}")
    return rows


def build_task_data(
    task: str,
    data_dir: PathLike,
    layout: TokenLayout,
    tokenizer: Any,
    pattern: AbsPattern,
    pattern_name: str = "delay",
    codes_scp: Optional[PathLike] = None,
    codes_layout: str = "TK",
    feat_frame_rate: float = 25.0,
    sample_rate: Optional[int] = None,
    max_len: Optional[int] = None,
    max_text_len: Optional[int] = None,
    task_marker: bool = False,
    check_audio: bool = True,
) -> TaskData:
    """Build the examples of ``task`` from a Kaldi data dir (+ codes.scp) -> :class:`TaskData`.

    ``tokenizer``: an :class:`ualm_tk.tokens.text_tokenizer.AbsTextTokenizer` whose vocabulary is
    ``layout``'s text block. ``sample_rate``: expected rate of the audio (checked per file when
    ``check_audio``; when ``check_audio`` is off it is taken as the rate of every file).
    Raises :class:`TaskDataError` naming the file and key of the first bad input, and
    :class:`ExampleTooLong` for a text field longer than ``max_text_len`` tokens or an example
    longer than ``max_len`` positions.
    """
    from tqdm import tqdm

    from ualm_tk.data.task_templates import ExampleTooLong, make_segments, num_feat_frames, sequence_length
    from ualm_tk.tokens.text_tokenizer import TextTokenizerError

    tpl = get_template(task)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TaskDataError(f"{data_dir}: data directory not found")
    if codes_layout not in CODES_LAYOUTS:
        raise TaskDataError(f"codes_layout must be one of {CODES_LAYOUTS}, got {codes_layout!r}")
    if list(tokenizer.vocab()) != list(layout.text_vocab):
        raise TokenLayoutMismatch("the text tokenizer's vocabulary is not the token layout's text block")
    K = layout.num_codebooks
    rows = _source_rows(tpl.source, data_dir)
    if not rows:
        raise TaskDataError(f"{data_dir}: no examples for task {task}")

    codes_refs: Dict[str, str] = {}
    if "codes" in tpl.needs:
        if codes_scp is None:
            raise TaskDataError(f"task {task} needs the codec codes: give codes_scp (--codes_scp)")
        from ualm_tk.data.kaldi_files import read_kaldi_file

        codes_refs = read_kaldi_file(codes_scp)
    wav: Dict[str, str] = {}
    nsamp: Dict[str, str] = {}
    if "audio" in tpl.needs:
        wav = _require(data_dir / "wav.scp", "audio paths")
        nsamp = _require(data_dir / "utt2num_samples", "audio lengths; stage 2 writes it")
        if not check_audio and sample_rate is None:
            raise TaskDataError(f"task {task}: give sample_rate (--fs) when the audio headers are not read")

    def encoder(key: str):
        def encode(text: str, what: str) -> List[int]:
            try:
                ids = tokenizer.encode_field(text, key, what)
            except TextTokenizerError as e:
                raise TaskDataError(f"{data_dir}: {e}") from None
            if max_text_len is not None and len(ids) > max_text_len:
                raise ExampleTooLong(
                    f"{data_dir}: key '{key}': {what} has {len(ids)} tokens, more than max_text_len={max_text_len}"
                )
            return layout.text_to_global(ids)

        return encode

    examples: Dict[str, Dict[str, Any]] = {}
    for row in tqdm(rows, desc=f"{task} {data_dir.name}", mininterval=5, disable=len(rows) < 500):
        key = row["key"]
        ex: Dict[str, Any] = dict(row)
        utt = row.get("utt")
        if "codes" in tpl.needs:
            ref = _lookup(codes_refs, utt, codes_scp, key)
            codes = load_codes(ref, codes_layout)  # [K,T]
            if codes.shape[0] != K:
                raise TaskDataError(
                    f"{codes_scp}: key '{utt}': codes have {codes.shape[0]} codebooks with --codes_layout "
                    f"{codes_layout} (shape {tuple(codes.shape)} as [K,T]), the token list has K={K}"
                )
            if codes.size and (codes.min() < 0 or codes.max() >= layout.codebook_size):
                raise TaskDataError(
                    f"{codes_scp}: key '{utt}': codes outside [0, {layout.codebook_size}) "
                    f"(min {codes.min()}, max {codes.max()})"
                )
            if codes.shape[1] < 1:
                raise TaskDataError(f"{codes_scp}: key '{utt}': no frames")
            ex.update(codes=ref, num_frames=int(codes.shape[1]))
        if "audio" in tpl.needs:
            path = _lookup(wav, utt, data_dir / "wav.scp", key)
            n = int(_lookup(nsamp, utt, data_dir / "utt2num_samples", key))
            sr = sample_rate
            if check_audio:
                import soundfile

                try:
                    info = soundfile.info(path)
                except Exception as e:
                    raise TaskDataError(f"{data_dir / 'wav.scp'}: key '{utt}': cannot read audio {path}: {e}") from None
                if sample_rate is not None and info.samplerate != sample_rate:
                    raise TaskDataError(
                        f"{data_dir / 'wav.scp'}: key '{utt}': {path} is {info.samplerate} Hz, expected {sample_rate} Hz"
                    )
                if info.frames != n:
                    raise TaskDataError(
                        f"{data_dir / 'utt2num_samples'}: key '{utt}': says {n} samples, {path} has {info.frames}"
                    )
                sr = info.samplerate
            ex.update(wav=path, num_samples=n, sample_rate=sr, num_feat_frames=num_feat_frames(n, sr, feat_frame_rate))
        segs = make_segments(task, ex, encoder(key), task_marker=task_marker)
        length = sequence_length(segs, pattern, K)
        if max_len is not None and length > max_len:
            raise ExampleTooLong(
                f"{data_dir}: key '{key}': task {task} example has {length} positions, more than max_len={max_len}"
            )
        meta = {k: row[k] for k in ("utt", "qtype") if k in row and row[k] != key}
        for src, name in (("text", "caption"), ("question", "question"), ("answer", "answer")):
            if src in row:
                meta[name] = row[src]
        examples[key] = {"segments": [s.to_json() for s in segs], "length": length, "meta": meta}

    return TaskData(
        task=task,
        token_bias=layout.token_bias,
        token_list_sha256=layout.sha256(),
        num_codebooks=K,
        codebook_size=layout.codebook_size,
        pattern=pattern_name,
        codes_layout=codes_layout,
        feat_frame_rate=float(feat_frame_rate),
        examples=examples,
        task_marker=task_marker,
    )
