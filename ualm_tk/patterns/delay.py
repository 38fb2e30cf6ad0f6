"""The delay pattern (MusicGen / UALM): stream k shifted right by k frames, ``S = T + K - 1``.

Position s holds frame ``s - k`` of stream k (pad when ``s < k`` or ``s - k >= T``)::

    s:        0    1    2    3    4        (T = 3, K = 3)
    stream 0  c00  c01  c02  pad  pad
    stream 1  pad  c10  c11  c12  pad
    stream 2  pad  pad  c20  c21  c22

so the LM predicts coarse codes of a frame before the finer ones, one position per frame.
"""

from __future__ import annotations

from typing import List

from ualm_tk.patterns.abs_pattern import AbsPattern


class DelayPattern(AbsPattern):
    def offsets(self, num_codebooks: int) -> List[int]:
        return list(range(num_codebooks))
