"""Abstract base of the ``pattern`` registry: interleave RVQ codes into LM positions and back.

Shapes: ``codes [B,K,T]`` (T frames of K codebooks) <-> ``seq [B,S,K]`` (S positions, K streams).
Positions that hold no code get ``pad_id``. Patterns work on any integer ids; in the LM they run
on *global* ids (:meth:`ualm_tk.tokens.layout.TokenLayout.audio_to_global`) where ``pad_id = 0``
(``<pad>``) can never be a code. On codebook-local codes use ``pad_id = codebook_size``.

Every pattern places stream k's frame t at position ``t + offset_k`` (:meth:`offsets`), stream 0
is never shifted (``offset_0 == 0``): the task templates put the closing ``<eos>``/``<eot>`` of an
audio segment in stream 0 right after its last frame (position T), and inference stops there
and finishes the delayed tail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List

import torch
from typeguard import typechecked


class PatternError(ValueError):
    """A sequence cannot be reverted to codes (wrong shape, incomplete tail, misplaced pad)."""


class AbsPattern(ABC):
    """Interface every registered pattern implements (stateless apart from ``pad_id``)."""

    @typechecked
    def __init__(self, pad_id: int = 0):
        self.pad_id = int(pad_id)

    # ---------------------------------------------------------------- geometry
    @abstractmethod
    def offsets(self, num_codebooks: int) -> List[int]:
        """Delay (in positions) of each stream; ``offsets(K)[0] == 0``."""

    def num_positions(self, num_frames: int, num_codebooks: int) -> int:
        """S for T frames: ``T + max(offsets)``."""
        if num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {num_frames}")
        return num_frames + max(self.offsets(num_codebooks))

    def num_frames(self, num_positions: int, num_codebooks: int) -> int:
        """T for a complete sequence of S positions (inverse of :meth:`num_positions`)."""
        return num_positions - max(self.offsets(num_codebooks))

    def valid_mask(self, num_frames: int, num_codebooks: int) -> torch.Tensor:
        """``mask [S,K]`` bool: True where a position holds a code, False where it holds pad."""
        offs = self.offsets(num_codebooks)
        s = torch.arange(self.num_positions(num_frames, num_codebooks)).unsqueeze(1)  # [S,1]
        o = torch.tensor(offs).unsqueeze(0)  # [1,K]
        return (s >= o) & (s < o + num_frames)

    # ---------------------------------------------------------------- build / revert
    def build(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B,K,T]`` -> ``seq [B,S,K]`` with ``pad_id`` where no code sits."""
        if codes.ndim != 3:
            raise PatternError(f"codes must be [B,K,T], got shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point:
            raise PatternError(f"codes must be integers, got {codes.dtype}")
        B, K, T = codes.shape
        if K < 1:
            raise PatternError("codes have no codebook (K = 0)")
        offs = self.offsets(K)
        S = self.num_positions(T, K)
        seq = codes.new_full((B, S, K), self.pad_id)
        for k, o in enumerate(offs):
            seq[:, o : o + T, k] = codes[:, k, :]
        return seq

    def revert(self, seq: torch.Tensor, truncate: bool = False) -> torch.Tensor:
        """``seq [B,S,K]`` -> ``codes [B,K,T]``, ``T = S - max(offsets)``.

        Strict by default: every position that must be pad (before a stream's start, after its
        end) must hold ``pad_id`` and every code position must not; a sequence cut before its
        delayed tail was complete (stream 0 still has codes where only the tail should be) raises
        :class:`PatternError`. With ``truncate=True`` the frames whose higher streams never arrived
        are dropped instead and only the complete ``T`` frames are returned (T may be 0).
        """
        if seq.ndim != 3:
            raise PatternError(f"seq must be [B,S,K], got shape {tuple(seq.shape)}")
        B, S, K = seq.shape
        if K < 1:
            raise PatternError("seq has no stream (K = 0)")
        offs = self.offsets(K)
        T = self.num_frames(S, K)
        if T < 0 or (T == 0 and not truncate):
            raise PatternError(
                f"{type(self).__name__}: a sequence of {S} positions holds no complete frame for K={K} "
                f"(needs at least {max(offs) + 1} positions); pass truncate=True to accept that"
            )
        T = max(T, 0)
        pad = seq == self.pad_id  # [B,S,K]
        if not truncate:
            valid = self.valid_mask(T, K).unsqueeze(0)  # [1,S,K]
            tail = ~valid & (torch.arange(S).unsqueeze(1) >= torch.tensor(offs).unsqueeze(0))  # after the end
            head = ~valid & ~tail  # before the start
            if bool((~pad & tail).any()):
                b, s, k = (int(x) for x in (~pad & tail).nonzero()[0])
                raise PatternError(
                    f"{type(self).__name__}: incomplete delayed tail: row {b} stream {k} holds a code at "
                    f"position {s} where a complete sequence of {T} frames has pad (S={S}, K={K}); "
                    "the sequence was cut before all streams finished — pass truncate=True to keep "
                    "only the complete frames"
                )
            if bool((~pad & head).any()):
                b, s, k = (int(x) for x in (~pad & head).nonzero()[0])
                raise PatternError(
                    f"{type(self).__name__}: row {b} stream {k} holds a code at position {s}, before the "
                    f"stream starts at position {offs[k]} (expected pad {self.pad_id})"
                )
            if bool((pad & valid).any()):
                b, s, k = (int(x) for x in (pad & valid).nonzero()[0])
                raise PatternError(
                    f"{type(self).__name__}: row {b} stream {k} holds pad at position {s} where frame "
                    f"{s - offs[k]} must be a code"
                )
        codes = seq.new_empty((B, K, T))
        for k, o in enumerate(offs):
            codes[:, k, :] = seq[:, o : o + T, k]
        return codes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pad_id={self.pad_id})"
