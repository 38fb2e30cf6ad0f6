"""The parallel pattern: all K codes of frame t at position t, ``S = T`` (no delay)."""

from __future__ import annotations

from typing import List

from ualm_tk.patterns.abs_pattern import AbsPattern


class ParallelPattern(AbsPattern):
    def offsets(self, num_codebooks: int) -> List[int]:
        return [0] * num_codebooks
