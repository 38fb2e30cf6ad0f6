"""The 256 special-token slots at the start of the global vocabulary (ids 0..255).

The order below IS the id assignment: slot ``i`` of :data:`SPECIAL_TOKENS` has global id ``i``.
It is a tuple defined in code, so no id can ever depend on the key order of a dict or a YAML
file (a pitfall that broke resumed training in an earlier toolkit).

**Append-only.** Never reorder, rename or delete an entry: models and ``data.json`` files written
earlier store these ids. To add a special token, replace the *first* ``<special_NN>`` reserved
slot by appending a name to :data:`_ASSIGNED` (``test/tokens/test_specials.py`` holds a golden
list of the assigned ids and fails if an existing one moves).

Meaning of the assigned slots:

* ``<pad>`` (0) fills streams 1..K-1 next to text, the delay-pattern gaps and padded batches;
  its embedding row is zero.
* ``<bos>`` starts every sequence; ``<eos>`` closes a segment (end of a turn);
  ``<eot>`` closes a segment that the same role continues (a user turn with audio then a question,
  an assistant turn interleaving text and audio in its reasoning).
* ``<unk>`` is available for tokenisers that need one (byte-fallback BPE never emits it).
* roles ``<system>`` ``<user>`` ``<assistant>``; modality markers ``<text>``, ``<audio>`` (discrete
  codec tokens follow, or continuous features for user-side audio) and ``<audio_feats>`` (one
  placeholder position per encoder frame; the model writes the encoder's features there).
* task markers ``<task_*>`` (optional system segment naming the task template);
* reasoning markers ``<think>`` ``</think>``, ``<rich_caption>`` ``</rich_caption>``,
  ``<critique>`` ``</critique>`` (UALM-Reason's enrichment / self-reflection formats).
"""

from __future__ import annotations

from typing import Dict, Tuple

NUM_SPECIAL_SLOTS = 256

# Append new names at the END of this tuple only.
_ASSIGNED: Tuple[str, ...] = (
    "<pad>",  # 0
    "<bos>",  # 1
    "<eos>",  # 2
    "<eot>",  # 3
    "<unk>",  # 4
    "<system>",  # 5
    "<user>",  # 6
    "<assistant>",  # 7
    "<text>",  # 8
    "<audio>",  # 9
    "<audio_feats>",  # 10
    "<task_caption_to_audio>",  # 11
    "<task_audio_to_caption>",  # 12
    "<task_audio_qa>",  # 13
    "<task_text_only>",  # 14
    "<think>",  # 15
    "</think>",  # 16
    "<rich_caption>",  # 17
    "</rich_caption>",  # 18
    "<critique>",  # 19
    "</critique>",  # 20
)

RESERVED_PREFIX = "<special_"


def reserved_name(slot: int) -> str:
    """Name of an unassigned slot, e.g. ``<special_21>``."""
    return f"{RESERVED_PREFIX}{slot}>"


def is_reserved_name(name: str, slot: int) -> bool:
    return name == reserved_name(slot)


SPECIAL_TOKENS: Tuple[str, ...] = _ASSIGNED + tuple(
    reserved_name(i) for i in range(len(_ASSIGNED), NUM_SPECIAL_SLOTS)
)
assert len(SPECIAL_TOKENS) == NUM_SPECIAL_SLOTS, "more special tokens than slots"
assert len(set(SPECIAL_TOKENS)) == NUM_SPECIAL_SLOTS, "duplicate special token"

SPECIAL_IDS: Dict[str, int] = {name: i for i, name in enumerate(SPECIAL_TOKENS)}


def special_id(name: str) -> int:
    """Global id of a special token; a clear error for unknown names."""
    try:
        return SPECIAL_IDS[name]
    except KeyError:
        assigned = ", ".join(_ASSIGNED)
        raise KeyError(f"unknown special token {name!r}; assigned ones: {assigned}") from None


PAD = special_id("<pad>")
BOS = special_id("<bos>")
EOS = special_id("<eos>")
EOT = special_id("<eot>")
UNK = special_id("<unk>")
SYSTEM = special_id("<system>")
USER = special_id("<user>")
ASSISTANT = special_id("<assistant>")
TEXT = special_id("<text>")
AUDIO = special_id("<audio>")
AUDIO_FEATS = special_id("<audio_feats>")

ROLE_IDS: Dict[str, int] = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
EOS_IDS: Dict[str, int] = {"<eos>": EOS, "<eot>": EOT}


def task_marker(task: str) -> int:
    """Id of ``<task_{task}>``; raises naming the task when no marker is assigned."""
    return special_id(f"<task_{task}>")
