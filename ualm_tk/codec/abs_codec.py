"""Abstract base of the ``codec`` registry: waveform <-> residual-vector-quantised codes.

Shapes: ``wav [B, 1, L]`` float (mono at :attr:`sample_rate`), ``codes [B, K, T]`` long with
``T = ceil(L / hop)`` frames at :attr:`frame_rate` and entries in ``[0, codebook_size)``.
``decode`` accepts ``K' <= K`` codebooks for codecs trained with quantizer dropout.

Subclasses implement ``_encode`` / ``_decode``; the public ``encode`` / ``decode`` validate the
input first, so every codec rejects bad input with the same clear messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Optional

import torch


class CodecInputError(ValueError):
    """Audio or codes handed to a codec have the wrong shape, rate, length or values."""


class AbsCodec(torch.nn.Module, ABC):
    """Interface every registered codec implements."""

    # True when the weights travel in the component directory (model.pth); False for codecs
    # whose weights live elsewhere (a Hugging Face directory named in the conf).
    saves_weights: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.conf: Dict[str, Any] = {}  # constructor kwargs, saved in component.yaml

    # ---------------------------------------------------------------- properties
    @property
    @abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abstractmethod
    def frame_rate(self) -> float: ...

    @property
    @abstractmethod
    def num_codebooks(self) -> int: ...

    @property
    @abstractmethod
    def codebook_size(self) -> int: ...

    @property
    def hop_length(self) -> int:
        """Samples per frame."""
        return int(round(self.sample_rate / self.frame_rate))

    @property
    def bitrate(self) -> float:
        """Bits per second with all codebooks."""
        import math

        return self.frame_rate * self.num_codebooks * math.log2(self.codebook_size)

    def num_frames(self, num_samples: int) -> int:
        """Frames ``encode`` returns for ``num_samples`` samples."""
        return -(-int(num_samples) // self.hop_length)

    def pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad ``wav [B, 1, L]`` with zeros to a multiple of the hop."""
        rest = (-wav.shape[-1]) % self.hop_length
        return torch.nn.functional.pad(wav, (0, rest)) if rest else wav

    # ---------------------------------------------------------------- public API
    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, 1, L]`` -> ``codes [B, K, T]`` (long), ``T = ceil(L / hop)``."""
        self.check_wav(wav)
        codes = self._encode(wav)
        return codes.long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, K', T]`` with ``K' <= K`` -> ``wav [B, 1, T * hop]``."""
        self.check_codes(codes)
        return self._decode(codes.long())

    @abstractmethod
    def _encode(self, wav: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    # ---------------------------------------------------------------- validation
    def check_wav(self, wav: torch.Tensor, name: Optional[str] = None) -> None:
        where = f"{name}: " if name else ""
        if not torch.is_tensor(wav) or not torch.is_floating_point(wav):
            raise CodecInputError(f"{where}audio must be a float tensor [B, 1, L], got {type(wav).__name__}"
                                  f"{'' if not torch.is_tensor(wav) else ' of ' + str(wav.dtype)}")
        if wav.dim() != 3:
            raise CodecInputError(f"{where}audio must be [B, 1, L], got shape {tuple(wav.shape)}")
        if wav.shape[1] != 1:
            raise CodecInputError(
                f"{where}audio has {wav.shape[1]} channels; this codec takes mono [B, 1, L]"
            )
        if wav.shape[0] == 0 or wav.shape[2] == 0:
            raise CodecInputError(f"{where}audio is empty (shape {tuple(wav.shape)})")
        if not bool(torch.isfinite(wav).all()):
            bad = int((~torch.isfinite(wav)).sum())
            raise CodecInputError(f"{where}audio holds {bad} NaN/Inf samples")

    def check_codes(self, codes: torch.Tensor, name: Optional[str] = None) -> None:
        where = f"{name}: " if name else ""
        if not torch.is_tensor(codes) or torch.is_floating_point(codes):
            raise CodecInputError(f"{where}codes must be an integer tensor [B, K, T]")
        if codes.dim() != 3:
            raise CodecInputError(f"{where}codes must be [B, K, T], got shape {tuple(codes.shape)}")
        k = codes.shape[1]
        if k < 1 or k > self.num_codebooks:
            raise CodecInputError(
                f"{where}codes have {k} codebooks; this codec decodes 1..{self.num_codebooks}"
            )
        if codes.shape[0] == 0 or codes.shape[2] == 0:
            raise CodecInputError(f"{where}codes are empty (shape {tuple(codes.shape)})")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise CodecInputError(
                f"{where}code values span [{lo}, {hi}], outside [0, {self.codebook_size})"
            )

    def meta(self) -> Dict[str, Any]:
        """Facts written beside the conf in component.yaml."""
        return dict(
            sample_rate=int(self.sample_rate),
            frame_rate=float(self.frame_rate),
            num_codebooks=int(self.num_codebooks),
            codebook_size=int(self.codebook_size),
            hop_length=int(self.hop_length),
            bitrate_bps=float(self.bitrate),
        )


class StoredGeometry:
    """Mixin for codecs whose constructor sets ``_sample_rate``, ``_hop``, ``_num_codebooks`` and
    ``_codebook_size``: gives the corresponding :class:`AbsCodec` properties.

    Use as ``class MyCodec(StoredGeometry, AbsCodec)``.
    """

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def frame_rate(self) -> float:
        return self._sample_rate / self._hop

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def hop_length(self) -> int:
        return self._hop
