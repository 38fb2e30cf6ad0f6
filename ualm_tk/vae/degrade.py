"""Stand-in for codec resynthesis when no trained codec exists yet: a naive low-rate coder.

``degrade(wav [C, L] at sr)`` -> ``[1, L']`` at ``out_sr``: down-mix to mono, windowed-sinc
resampling to ``out_sr`` (which removes everything above out_sr / 2), then mu-law quantisation
to ``mu_law_bits`` bits. The VAE's real training input is the codec's resynthesis
(``python -m ualm_tk.bin.codec_resynth``); this only gives pairs of the same shape before then.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

from ualm_tk.audio.resample import apply_channel_policy, resample


def degrade(wav: np.ndarray, sample_rate: int, out_sample_rate: int = 16000, mu_law_bits: int = 8) -> np.ndarray:
    """Mono, resampled to ``out_sample_rate``, mu-law quantised: ``[C, L]`` -> ``[1, L']`` float32."""
    if mu_law_bits < 2 or mu_law_bits > 16:
        raise ValueError(f"mu_law_bits must be in [2, 16], got {mu_law_bits}")
    mono = apply_channel_policy(np.asarray(wav, dtype=np.float32), "mono")  # [1, L]
    lo = resample(mono, sample_rate, out_sample_rate)  # [1, L']
    q = 2 ** mu_law_bits
    x = torch.from_numpy(np.clip(lo, -1.0, 1.0))
    y = AF.mu_law_decoding(AF.mu_law_encoding(x, q), q)
    return y.numpy().astype(np.float32)
