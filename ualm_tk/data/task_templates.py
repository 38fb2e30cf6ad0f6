"""Task templates: from one data example to the ``[S,K]`` token matrix the LM trains on.

Sequence format (DESIGN.md §3)::

    <bos> { <role> <modality> content <eos>|<eot> }*

* text content (global ids) sits in stream 0, ``<pad>`` in streams 1..K-1; so do ``<bos>``, the
  role/modality headers and the closing tokens;
* discrete audio content (assistant side: codec codes) fills all K streams after the pattern
  (``pattern.build``); the closing token sits in stream 0 at the first position after the last
  frame of stream 0 (relative position T), overlapping the delayed tail, so the segment spans
  ``max(pattern.num_positions(T, K), T + 1)`` positions after its header; inference stops at
  that ``<eos>`` and finishes the tail;
* continuous audio (user side): ``<audio>`` header, then ``<audio_feats>`` x ``num_feat_frames``
  placeholder positions (one per encoder frame, :func:`num_feat_frames`, 25 frames/s by default)
  where the model writes the encoder's features; :attr:`RenderedExample.audio_feats` records the
  span and the audio file;
* ``<eot>`` closes a segment that the same role continues (user audio then the question; an
  assistant solution then its answer).

Loss mask (``[S,K]`` float): non-zero only on assistant segments, on the content and the
closing token: text ``text_weight`` (1) in stream 0; audio ``audio_weight`` (default 1/K) on every
stream position that holds a code (pattern pads get 0), so one frame costs about one text token.
``audio_weight`` may also be one weight per stream (:func:`stream_weights`), e.g. more on the
coarse codebooks that carry what a listener (or a tagger) recognises.

The templates (``TASK_TEMPLATES``) turn the fields of an example into a list of :class:`Segment`;
the rendering is generic. A new template = one function + one line in ``TASK_TEMPLATES``.
Segments are what ``data.json`` stores (text as ids, audio as references), so rendering happens
when the trainer loads an example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ualm_tk.patterns.abs_pattern import AbsPattern
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout

ROLES = ("system", "user", "assistant")
MODALITIES = ("text", "audio", "audio_feats")
MODALITY_IDS = {"text": sp.TEXT, "audio": sp.AUDIO, "audio_feats": sp.AUDIO}
DEFAULT_FEAT_FRAME_RATE = 25.0


class TaskDataError(ValueError):
    """Bad task, bad example field or inconsistent example; the message names the key."""


class ExampleTooLong(TaskDataError):
    """An example exceeds ``max_len`` positions (or a text field ``max_text_len`` tokens)."""


def num_feat_frames(num_samples: int, sample_rate: int, frame_rate: float = DEFAULT_FEAT_FRAME_RATE) -> int:
    """Encoder frames for ``num_samples`` samples: ``ceil(num_samples * frame_rate / sample_rate)``.

    The audio encoder must produce exactly this many frames (the model pads/trims to it).
    """
    if num_samples < 1 or sample_rate < 1:
        raise ValueError(f"num_samples and sample_rate must be positive, got {num_samples}, {sample_rate}")
    return max(1, math.ceil(num_samples * frame_rate / sample_rate - 1e-9))


# ============================================================================ segments
@dataclass
class Segment:
    """One ``<role> <modality> content <eos>|<eot>`` segment as stored in data.json.

    * ``text``: ``ids`` = global ids of the content (text tokens, or specials such as a task marker);
    * ``audio``: ``codes`` = kaldiio reference (``ark:offset``) of a ``[T,K]``/``[K,T]`` int array
      of local codes, ``num_frames`` = T;
    * ``audio_feats``: ``wav`` path, ``num_samples``, ``sample_rate``, ``num_feat_frames``.

    ``condition`` marks the part that CFG replaces by pad; ``end`` is ``<eos>`` or ``<eot>``.
    """

    role: str
    modality: str
    ids: Optional[List[int]] = None
    codes: Optional[str] = None
    num_frames: int = 0
    wav: Optional[str] = None
    num_samples: int = 0
    sample_rate: int = 0
    num_feat_frames: int = 0
    end: str = "<eos>"
    condition: bool = False

    def validate(self, where: str = "") -> None:
        pre = f"{where}: " if where else ""
        if self.role not in ROLES:
            raise TaskDataError(f"{pre}unknown role {self.role!r} (known: {', '.join(ROLES)})")
        if self.modality not in MODALITIES:
            raise TaskDataError(f"{pre}unknown modality {self.modality!r} (known: {', '.join(MODALITIES)})")
        if self.end not in sp.EOS_IDS:
            raise TaskDataError(f"{pre}segment end must be <eos> or <eot>, got {self.end!r}")
        if self.modality == "text" and not self.ids:
            raise TaskDataError(f"{pre}empty {self.role} text segment")
        if self.modality == "audio" and (not self.codes or self.num_frames < 1):
            raise TaskDataError(f"{pre}audio segment needs a codes reference and num_frames >= 1")
        if self.modality == "audio_feats" and (not self.wav or self.num_feat_frames < 1):
            raise TaskDataError(f"{pre}audio_feats segment needs a wav path and num_feat_frames >= 1")

    def content_length(self, pattern: AbsPattern, num_codebooks: int) -> int:
        """Positions after the 2 header tokens, closing token included."""
        if self.modality == "text":
            return len(self.ids or []) + 1
        if self.modality == "audio_feats":
            return self.num_feat_frames + 1
        return max(pattern.num_positions(self.num_frames, num_codebooks), self.num_frames + 1)

    def to_json(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"role": self.role, "modality": self.modality}
        if self.modality == "text":
            d["ids"] = list(self.ids or [])
        elif self.modality == "audio":
            d.update(codes=self.codes, num_frames=self.num_frames)
        else:
            d.update(
                wav=self.wav,
                num_samples=self.num_samples,
                sample_rate=self.sample_rate,
                num_feat_frames=self.num_feat_frames,
            )
        if self.end != "<eos>":
            d["end"] = self.end
        if self.condition:
            d["condition"] = True
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "") -> "Segment":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise TaskDataError(f"{where}: unknown segment field(s) {sorted(unknown)}")
        try:
            seg = cls(**d)
        except TypeError as e:
            raise TaskDataError(f"{where}: bad segment {dict(d)}: {e}") from None
        seg.validate(where)
        return seg


def sequence_length(segments: Sequence[Segment], pattern: AbsPattern, num_codebooks: int) -> int:
    """S of the rendered example (``<bos>`` + headers + contents + closing tokens), without loading codes."""
    return 1 + sum(2 + s.content_length(pattern, num_codebooks) for s in segments)


# ============================================================================ templates
Encode = Callable[[str, str], List[int]]  # (text, what) -> global ids; raises naming the key


def _need(ex: Mapping[str, Any], name: str, task: str, hint: str = "") -> Any:
    v = ex.get(name)
    if v is None or v == "":
        key = ex.get("key", "?")
        raise TaskDataError(f"key '{key}': task {task} needs field '{name}'{hint}, which is missing or empty")
    return v


def prompt_fields_for_audio(
    wav: str, num_samples: int, sample_rate: int, feat_frame_rate: float = DEFAULT_FEAT_FRAME_RATE
) -> Dict[str, Any]:
    """The user-audio fields of a prompt (``wav``, ``num_samples``, ``sample_rate``, ``num_feat_frames``)."""
    return {
        "wav": str(wav),
        "num_samples": int(num_samples),
        "sample_rate": int(sample_rate),
        "num_feat_frames": num_feat_frames(num_samples, sample_rate, feat_frame_rate),
    }


def _user_audio_feats(ex: Mapping[str, Any], task: str, end: str = "<eos>") -> Segment:
    return Segment(
        role="user",
        modality="audio_feats",
        wav=_need(ex, "wav", task, " (wav.scp)"),
        num_samples=int(_need(ex, "num_samples", task, " (utt2num_samples)")),
        sample_rate=int(_need(ex, "sample_rate", task)),
        num_feat_frames=int(_need(ex, "num_feat_frames", task)),
        end=end,
    )


def caption_to_audio(ex: Mapping[str, Any], encode: Encode) -> List[Segment]:
    """User text caption -> assistant audio codes (the caption is the CFG condition)."""
    t = "caption_to_audio"
    return [
        Segment("user", "text", ids=encode(_need(ex, "text", t, " (text)"), "caption"), condition=True),
        Segment(
            "assistant",
            "audio",
            codes=_need(ex, "codes", t, " (give --codes_scp)"),
            num_frames=int(_need(ex, "num_frames", t, " (give --codes_scp)")),
        ),
    ]


def audio_to_caption(ex: Mapping[str, Any], encode: Encode) -> List[Segment]:
    """User audio (continuous features) -> assistant caption."""
    t = "audio_to_caption"
    return [
        _user_audio_feats(ex, t),
        Segment("assistant", "text", ids=encode(_need(ex, "text", t, " (text)"), "caption")),
    ]


def audio_qa(ex: Mapping[str, Any], encode: Encode) -> List[Segment]:
    """User audio + question (one user turn, joined by <eot>) -> assistant answer."""
    t = "audio_qa"
    return [
        _user_audio_feats(ex, t, end="<eot>"),
        Segment("user", "text", ids=encode(_need(ex, "question", t, " (qa/question)"), "question")),
        Segment("assistant", "text", ids=encode(_need(ex, "answer", t, " (qa/answer)"), "answer")),
    ]


def audio_qa_dialog(ex: Mapping[str, Any], encode: Encode) -> List[Segment]:
    """User audio, then every question about it as a user/assistant turn (training format).

    One clip's questions in one sequence: the clip's features are encoded once for all of its
    questions (an ``audio_qa`` data set repeats them per question). The first turn is exactly an
    ``audio_qa`` example; ``turns`` come in the order stored (shuffled per clip when built).
    """
    t = "audio_qa_dialog"
    turns = _need(ex, "turns", t, " (qa/question grouped by qa2utt)")
    if not turns:
        raise TaskDataError(f"key '{ex.get('key', '?')}': task {t} needs at least one question")
    segs = [_user_audio_feats(ex, t, end="<eot>")]
    for question, answer in turns:
        segs.append(Segment("user", "text", ids=encode(question, "question")))
        segs.append(Segment("assistant", "text", ids=encode(answer, "answer")))
    return segs


def text_only(ex: Mapping[str, Any], encode: Encode) -> List[Segment]:
    """User question -> assistant answer, text only.

    With a non-empty ``solution`` (text_only/solution) the assistant turn has two segments: the
    worked solution closed by ``<eot>`` (the same role continues), then the answer (``<eos>``).
    """
    t = "text_only"
    segs = [Segment("user", "text", ids=encode(_need(ex, "question", t, " (text_only/question)"), "question"))]
    solution = ex.get("solution")
    if solution:
        segs.append(Segment("assistant", "text", ids=encode(solution, "solution"), end="<eot>"))
    segs.append(Segment("assistant", "text", ids=encode(_need(ex, "answer", t, " (text_only/answer)"), "answer")))
    return segs


@dataclass(frozen=True)
class TaskTemplate:
    """A template function and where its examples come from.

    ``source``: ``clips`` (one example per utterance of ``text``), ``qa`` (one per key of
    ``qa/question``, audio of its ``qa2utt`` utterance), ``qa_dialog`` (one per utterance with
    questions: all of them as turns, in a per-clip shuffled order) or ``text_only`` (``text_only/question``).
    ``needs``: what the example builder must provide (``codes`` -> ``--codes_scp``,
    ``audio`` -> ``wav.scp`` + ``utt2num_samples``).
    """

    build: Callable[[Mapping[str, Any], Encode], List[Segment]]
    source: str
    needs: Tuple[str, ...] = ()
    answer_fields: Tuple[str, ...] = ()  # what the assistant produces (absent from a prompt)


TASK_TEMPLATES: Dict[str, TaskTemplate] = {
    "caption_to_audio": TaskTemplate(caption_to_audio, "clips", ("codes",), ("codes", "num_frames")),
    "audio_to_caption": TaskTemplate(audio_to_caption, "clips", ("audio",), ("text",)),
    "audio_qa": TaskTemplate(audio_qa, "qa", ("audio",), ("answer",)),
    "audio_qa_dialog": TaskTemplate(audio_qa_dialog, "qa_dialog", ("audio",), ("turns",)),
    "text_only": TaskTemplate(text_only, "text_only", (), ("answer", "solution")),
}


def get_template(task: str) -> TaskTemplate:
    try:
        return TASK_TEMPLATES[task]
    except KeyError:
        raise TaskDataError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASK_TEMPLATES))}") from None


def assistant_turn_start(segments: Sequence[Segment], key: str = "") -> int:
    """Index of the first segment of the final assistant turn (the trailing run of assistant
    segments, e.g. a solution ``<eot>`` then the answer). Raises when the last segment is not
    an assistant segment."""
    if not segments or segments[-1].role != "assistant":
        raise TaskDataError(f"key '{key}': the segments do not end with an assistant segment")
    i = len(segments) - 1
    while i > 0 and segments[i - 1].role == "assistant":
        i -= 1
    return i


def make_segments(task: str, ex: Mapping[str, Any], encode: Encode, task_marker: bool = False) -> List[Segment]:
    """Segments of one example; ``task_marker`` prepends ``<system> <text> <task_{task}> <eos>``."""
    segs = get_template(task).build(ex, encode)
    if task_marker:
        segs = [Segment("system", "text", ids=[sp.task_marker(task)])] + segs
    key = ex.get("key", "?")
    for i, s in enumerate(segs):
        s.validate(f"key '{key}' segment {i}")
    return segs


_TEXT_PLACEHOLDER = "\x00<answer placeholder>"
_PROMPT_PLACEHOLDER = {"codes": "<prompt>", "num_frames": 1}


def make_prompt_segments(
    task: str, fields: Mapping[str, Any], encode: Encode, task_marker: bool = False
) -> List[Segment]:
    """Segments for inference: ``fields`` hold only the user side (e.g. ``text`` for
    caption_to_audio; ``wav``/``num_samples``/``sample_rate``/``num_feat_frames`` + ``question`` for
    audio_qa). Render them with ``render_example(..., prompt_only=True)``: the result ends with the
    ``<assistant> <modality>`` header the decoder continues from. Giving an answer field is an error.
    The list ends with the FIRST segment of the assistant turn (placeholder content, never rendered):
    the model writes the rest of the turn (e.g. text_only: a solution ``<eot>`` before the answer).
    """
    tpl = get_template(task)
    given = [f for f in tpl.answer_fields if f in fields]
    if given:
        raise TaskDataError(f"task {task}: a prompt must not contain the answer field(s) {given}")
    ex: Dict[str, Any] = {"key": "prompt", **fields}
    for f in tpl.answer_fields:
        ex[f] = _PROMPT_PLACEHOLDER.get(f, _TEXT_PLACEHOLDER)

    def enc(text: str, what: str) -> List[int]:
        # the placeholder answer is never rendered (prompt_only stops at its header)
        return [sp.PAD] if text == _TEXT_PLACEHOLDER else encode(text, what)

    segs = make_segments(task, ex, enc, task_marker=task_marker)
    if segs[-1].role != "assistant":
        raise TaskDataError(f"task {task}: template does not end with an assistant segment")
    return segs[: assistant_turn_start(segs, "prompt") + 1]


# ============================================================================ rendering
class SegmentSpan(NamedTuple):
    """Where a segment landed: ``[start, end)`` covers header..closing token,
    ``[content_start, content_end)`` the content (closing token excluded)."""

    role: str
    modality: str
    start: int
    end: int
    content_start: int
    content_end: int
    condition: bool


class FeatSpan(NamedTuple):
    """Placeholder positions ``[start, end)`` (stream 0 = ``<audio_feats>``) for a user audio file."""

    start: int
    end: int
    wav: str
    num_samples: int
    sample_rate: int


def stream_weights(audio_weight: Optional[Any], num_codebooks: int) -> np.ndarray:
    """Loss weight of each audio stream ``[K]`` from ``audio_weight``: ``None`` -> ``1/K`` each; a number
    -> that weight on every stream; a list -> one weight per stream (K values, finite, >= 0, not all 0)."""
    K = int(num_codebooks)
    if audio_weight is None:
        return np.full(K, 1.0 / K, dtype=np.float32)
    if isinstance(audio_weight, (int, float)) and not isinstance(audio_weight, bool):
        w = np.full(K, float(audio_weight), dtype=np.float32)
    elif isinstance(audio_weight, (list, tuple, np.ndarray)):  # an ndarray: weights resolved earlier
        if len(audio_weight) != K:
            raise TaskDataError(
                f"audio_weight has {len(audio_weight)} per-stream value(s) {list(audio_weight)}, but the token "
                f"layout has K={K} audio streams (give K values, or one number for every stream)"
            )
        try:
            w = np.asarray([float(v) for v in audio_weight], dtype=np.float32)
        except (TypeError, ValueError):
            raise TaskDataError(f"audio_weight {list(audio_weight)}: every per-stream value must be a number") from None
    else:
        raise TaskDataError(f"audio_weight must be a number or a list of K={K} numbers, got {audio_weight!r}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise TaskDataError(f"audio_weight {w.tolist()}: weights must be finite, >= 0 and not all 0")
    return w


@dataclass
class RenderedExample:
    tokens: np.ndarray  # [S,K] int64 global ids
    loss_mask: np.ndarray  # [S,K] float32
    segments: List[SegmentSpan]
    audio_feats: List[FeatSpan] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def has_condition(self) -> bool:
        """True for examples with a CFG condition (generation examples)."""
        return any(s.condition for s in self.segments)


CodesLoader = Callable[[str], np.ndarray]  # reference -> local codes [K,T]


def render_example(
    segments: Sequence[Segment],
    layout: TokenLayout,
    pattern: AbsPattern,
    load_codes: Optional[CodesLoader] = None,
    audio_weight: Optional[Any] = None,
    text_weight: float = 1.0,
    max_len: Optional[int] = None,
    key: str = "",
    prompt_only: bool = False,
) -> RenderedExample:
    """Render segments into ``tokens [S,K]``, ``loss_mask [S,K]`` and spans.

    ``audio_weight``: loss weight of each audio stream position (default ``1/K``), or one weight per
    stream (:func:`stream_weights`).
    ``prompt_only``: stop after the header (``<assistant> <modality>``) of the first segment of the
    final assistant turn (:func:`assistant_turn_start`; the last segment must be an assistant
    segment): the prefix inference decodes from (its loss mask is all zero).
    ``max_len``: raise :class:`ExampleTooLong` naming ``key`` when S exceeds it.
    """
    K = layout.num_codebooks
    if pattern.pad_id != sp.PAD:
        raise TaskDataError(f"the pattern's pad_id must be <pad> = {sp.PAD}, got {pattern.pad_id}")
    w_audio = stream_weights(audio_weight, K)  # [K]
    if prompt_only:
        if not segments or segments[-1].role != "assistant":
            raise TaskDataError(f"key '{key}': prompt_only needs an assistant segment last")
        segments = segments[: assistant_turn_start(segments, key) + 1]
        S = sequence_length(segments[:-1], pattern, K) + 2
    else:
        S = sequence_length(segments, pattern, K)
    if max_len is not None and S > max_len:
        raise ExampleTooLong(f"key '{key}': example has {S} positions, more than max_len={max_len}")
    tokens = np.full((S, K), sp.PAD, dtype=np.int64)
    mask = np.zeros((S, K), dtype=np.float32)
    spans: List[SegmentSpan] = []
    feats: List[FeatSpan] = []
    tokens[0, 0] = sp.BOS
    pos = 1
    for i, seg in enumerate(segments):
        start = pos
        tokens[pos, 0] = sp.ROLE_IDS[seg.role]
        tokens[pos + 1, 0] = MODALITY_IDS[seg.modality]
        pos += 2
        if prompt_only and i == len(segments) - 1:
            spans.append(SegmentSpan(seg.role, seg.modality, start, pos, pos, pos, seg.condition))
            break
        train = seg.role == "assistant"
        c0 = pos
        if seg.modality == "text":
            ids = np.asarray(seg.ids, dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= layout.audio_start):
                raise TaskDataError(
                    f"key '{key}': text segment {i} has ids outside the special/text blocks "
                    f"[0, {layout.audio_start}) (min {ids.min()}, max {ids.max()}): built with another token list?"
                )
            tokens[pos : pos + len(ids), 0] = ids
            pos += len(ids)
            c1 = pos
            if train:
                mask[c0 : pos + 1, 0] = text_weight
        elif seg.modality == "audio_feats":
            n = seg.num_feat_frames
            tokens[pos : pos + n, 0] = sp.AUDIO_FEATS
            feats.append(FeatSpan(pos, pos + n, str(seg.wav), seg.num_samples, seg.sample_rate))
            pos += n
            c1 = pos
            if train:
                raise TaskDataError(f"key '{key}': assistant segments cannot hold audio_feats (use audio codes)")
        else:
            if load_codes is None:
                raise TaskDataError(f"key '{key}': rendering audio segment {i} needs a codes loader")
            codes = np.asarray(load_codes(str(seg.codes)))  # [K,T] local
            if codes.ndim != 2 or codes.shape[0] != K or codes.shape[1] != seg.num_frames:
                raise TaskDataError(
                    f"key '{key}': codes {seg.codes} have shape {tuple(codes.shape)}, expected [K={K}, "
                    f"T={seg.num_frames}] (K,T layout)"
                )
            try:
                glob = layout.audio_to_global(torch.from_numpy(codes.astype(np.int64)), dim=0)  # [K,T]
            except ValueError as e:
                raise TaskDataError(f"key '{key}': codes {seg.codes}: {e}") from None
            seq = pattern.build(glob.unsqueeze(0))[0].numpy()  # [S_a,K]
            T = seg.num_frames
            tokens[pos : pos + seq.shape[0]] = seq
            if train:
                valid = pattern.valid_mask(T, K).numpy()  # [S_a,K]
                mask[pos : pos + seq.shape[0]] = np.where(valid, w_audio[None, :], mask[pos : pos + seq.shape[0]])
            c1 = pos + T
            pos = c1  # the closing token sits in stream 0 at relative position T (inside the tail)
        # closing token in stream 0
        if tokens[pos, 0] != sp.PAD:
            raise TaskDataError(f"key '{key}': pattern {pattern} shifts stream 0; closing token slot is taken")
        tokens[pos, 0] = sp.EOS_IDS[seg.end]
        if train:
            mask[pos, 0] = text_weight
        end = start + 2 + seg.content_length(pattern, K)
        spans.append(SegmentSpan(seg.role, seg.modality, start, end, c0, c1, seg.condition))
        pos = end
    assert pos == S, (pos, S)
    return RenderedExample(tokens, mask, spans, feats)


def make_unconditional(ex: RenderedExample, scope: str = "condition") -> RenderedExample:
    """The CFG unconditional version of a generation example (same length, same positions).

    ``scope="condition"``: the content of condition segments (the caption) becomes ``<pad>``;
    ``scope="prefix"``: every position before the first assistant segment becomes ``<pad>`` (the
    paper code's all-pad prefix). The loss stays on assistant *audio* segments only. Works on
    prompts (``render_example(..., prompt_only=True)``) too, for the unconditional row at inference.
    """
    if scope not in ("condition", "prefix"):
        raise ValueError(f"scope must be 'condition' or 'prefix', got {scope!r}")
    if not ex.has_condition:
        raise TaskDataError("example has no condition segment (only generation examples have an unconditional form)")
    tokens = ex.tokens.copy()
    mask = np.zeros_like(ex.loss_mask)
    blanked: List[Tuple[int, int]] = []
    if scope == "condition":
        for s in ex.segments:
            if s.condition:
                blanked.append((s.content_start, s.content_end))
    else:
        first = next((s.start for s in ex.segments if s.role == "assistant"), ex.length)
        blanked.append((0, first))
    for a, b in blanked:
        tokens[a:b] = sp.PAD
    for s in ex.segments:
        if s.role == "assistant" and s.modality == "audio":
            mask[s.start : s.end] = ex.loss_mask[s.start : s.end]
    feats = [f for f in ex.audio_feats if not any(a <= f.start and f.end <= b for a, b in blanked)]
    return RenderedExample(tokens, mask, list(ex.segments), feats)
