"""``xcodec``: X-Codec (the paper's codec) through ``transformers.XcodecModel`` from a local directory.

Conf: ``model_dir`` (a ``save_pretrained`` directory; nothing is downloaded) and ``bandwidth``
in kbps, one of the model's ``target_bandwidths``; it picks the number of codebooks
(X-Codec general audio: 0.5 kbps -> 1 codebook, 4 kbps -> 8). The component directory saved by
:func:`ualm_tk.codec.save_codec` holds only ``component.yaml`` (with ``model_dir`` made absolute);
the weights stay in ``model_dir``.

Shapes: ``wav [B, 1, L]`` (padded to a multiple of the hop) -> ``codes [B, K, T]``;
``decode(codes [B, K', T])`` -> ``wav [B, 1, T * hop]``.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch
from typeguard import typechecked

from ualm_tk.codec.abs_codec import AbsCodec, StoredGeometry

class XCodec(StoredGeometry, AbsCodec):
    saves_weights = False

    @typechecked
    def __init__(self, model_dir: str, bandwidth: Optional[float] = None):
        super().__init__()
        from transformers import XcodecModel

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"xcodec: model_dir {model_dir} is not a directory")
        self.model = XcodecModel.from_pretrained(model_dir, local_files_only=True).eval()
        cfg = self.model.config
        bws = [float(b) for b in cfg.target_bandwidths]
        bw = bws[-1] if bandwidth is None else float(bandwidth)
        if bw not in bws:
            raise ValueError(f"xcodec: bandwidth {bw} kbps not supported by {model_dir}; choose one of {bws}")
        self.bandwidth = bw
        self.conf = dict(model_dir=os.path.abspath(model_dir), bandwidth=bw)
        self._sample_rate = int(cfg.sample_rate)
        self._hop = int(cfg.hop_length)
        self._codebook_size = int(cfg.codebook_size)
        self._num_codebooks = self.model.quantizer.get_num_quantizers_for_bandwidth(bw)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        wav = self.pad_to_hop(wav)
        out = self.model.encode(wav, bandwidth=self.bandwidth, return_dict=True)
        return out.audio_codes  # [B, K, T]

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes, return_dict=True).audio_values  # [B, 1, L]
