"""Abstract base of the ``audio_encoder`` registry: waveform -> continuous features at a fixed rate.

Shapes: ``wav [B, 1, L]`` float, mono at :attr:`sample_rate`, right-padded; ``lengths [B]`` the
valid samples of each row (default: all ``L``). Output ``feats [B, T', D]`` with ``D =``
:attr:`output_size`, ``T' = max(feat_lengths)``, and ``feat_lengths [B]`` where
``feat_lengths[b] = num_frames(lengths[b]) = ceil(lengths[b] * frame_rate / sample_rate)`` —
the same count as :func:`ualm_tk.data.task_templates.num_feat_frames`, i.e. the number of
``<audio_feats>`` placeholders the task templates put in a sequence for that clip. Frames past a
row's length are zero. A row's valid frames do not depend on what else is in the batch.

Resampling is the data pipeline's job (stage 2); this module only checks shapes and values.

Freezing (``freeze()``, or ``freeze: true`` in the conf) sets ``requires_grad=False`` on every
parameter and keeps the module in eval mode even when a parent calls ``.train()``.

Subclasses implement :meth:`_encode`; the public :meth:`forward` validates the input first and
checks that the subclass returned the promised frame counts.

Hidden layers: ``forward(wav, lengths, all_layers=True)`` returns ``layers [H, B, T', D]``, the
output of the input stage and of every block (the last entry is exactly the usual ``feats``), for
a learned weighted sum of layers on the LM side (SUPERB-style; ``encoder_layer_mix`` of the
``ualm`` model). Encoders that can give them implement :meth:`_encode_layers` and
:attr:`num_hidden_layers` (``H``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Tuple

import torch

from ualm_tk.data.task_templates import num_feat_frames


class AudioEncoderInputError(ValueError):
    """Audio or lengths handed to an audio encoder have the wrong shape, type or values."""


class AbsAudioEncoder(torch.nn.Module, ABC):
    """Interface every registered audio encoder implements."""

    # True when the weights travel in the component directory (model.pth); subclasses whose
    # weights live in an external directory override this (see WhisperEncoder).
    saves_weights: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.conf: Dict[str, Any] = {}  # constructor kwargs, saved in component.yaml
        self._frozen = False

    # ---------------------------------------------------------------- properties
    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Rate (Hz) the input waveform must have."""

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Output frames per second (25 for every encoder shipped here)."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """``D``: feature width."""

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def num_hidden_layers(self) -> Optional[int]:
        """``H``, the entries of ``forward(..., all_layers=True)``; None where the encoder cannot give them."""
        return None

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples (>= 1)."""
        return num_feat_frames(int(num_samples), self.sample_rate, self.frame_rate)

    def feat_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """``lengths [B]`` (samples) -> ``feat_lengths [B]`` (frames), long, same device."""
        return torch.tensor(
            [self.num_frames(int(n)) for n in lengths.tolist()], dtype=torch.long, device=lengths.device
        )

    # ---------------------------------------------------------------- freezing
    def freeze(self) -> "AbsAudioEncoder":
        """No gradients and eval mode from now on (the paper's frozen encoder)."""
        self._frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True) -> "AbsAudioEncoder":
        # a frozen encoder stays in eval mode (no dropout) whatever its parent does
        return super().train(mode and not self._frozen)

    # ---------------------------------------------------------------- public API
    def forward(
        self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None, all_layers: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, 1, L]``, ``lengths [B]`` -> ``feats [B, T', D]``, ``feat_lengths [B]``.

        ``all_layers=True``: ``layers [H, B, T', D]`` (see the module docstring) instead of ``feats``.
        """
        lengths = self.check_input(wav, lengths)
        feat_lengths = self.feat_lengths(lengths)
        if all_layers and self.num_hidden_layers is None:
            raise NotImplementedError(
                f"audio encoder {type(self).__name__} does not give its hidden layers "
                "(encoder_layer_mix needs an encoder that does, e.g. mel_transformer or whisper)"
            )
        encode = self._encode_layers if all_layers else self._encode
        if self._frozen:
            with torch.no_grad():
                feats = encode(wav, lengths, feat_lengths)
        else:
            feats = encode(wav, lengths, feat_lengths)
        t_max = int(feat_lengths.max())
        lead = (self.num_hidden_layers,) if all_layers else ()
        if feats.shape[:-1] != (*lead, wav.shape[0], t_max):
            want = f"[H={lead[0]}, " if all_layers else "["
            raise RuntimeError(
                f"{type(self).__name__}.{encode.__name__} returned shape {tuple(feats.shape)}, "
                f"expected {want}B={wav.shape[0]}, T'={t_max}, D={self.output_size}]"
            )
        return feats, feat_lengths

    @abstractmethod
    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """``wav [B,1,L]`` (validated), ``lengths [B]``, ``feat_lengths [B]`` -> ``feats [B, max(feat_lengths), D]``
        with zeros past each row's ``feat_lengths``."""

    def _encode_layers(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """Like :meth:`_encode`, but ``layers [H, B, T', D]`` whose last entry is :meth:`_encode`'s output.

        Only called when :attr:`num_hidden_layers` is not None (``forward`` refuses ``all_layers`` otherwise), so
        reaching this default means a subclass declared its layers without giving them."""
        raise NotImplementedError(
            f"{type(self).__name__} declares num_hidden_layers = {self.num_hidden_layers} but does not implement "
            "_encode_layers (it does not give its hidden layers)"
        )

    # ---------------------------------------------------------------- validation
    def check_input(self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Raise :class:`AudioEncoderInputError` on bad input; return ``lengths [B]`` (long)."""
        name = type(self).__name__
        if not torch.is_tensor(wav) or not torch.is_floating_point(wav):
            got = type(wav).__name__ if not torch.is_tensor(wav) else f"a {wav.dtype} tensor"
            raise AudioEncoderInputError(f"{name}: audio must be a float tensor [B, 1, L], got {got}")
        if wav.dim() != 3:
            raise AudioEncoderInputError(f"{name}: audio must be [B, 1, L], got shape {tuple(wav.shape)}")
        if wav.shape[1] != 1:
            raise AudioEncoderInputError(
                f"{name}: audio has {wav.shape[1]} channels (shape {tuple(wav.shape)}); the encoder takes mono [B, 1, L]"
            )
        B, _, L = wav.shape
        if B == 0 or L == 0:
            raise AudioEncoderInputError(f"{name}: audio is empty (shape {tuple(wav.shape)})")
        if lengths is None:
            lengths = torch.full((B,), L, dtype=torch.long, device=wav.device)
        if not torch.is_tensor(lengths) or lengths.dim() != 1 or lengths.shape[0] != B:
            shape = tuple(lengths.shape) if torch.is_tensor(lengths) else type(lengths).__name__
            raise AudioEncoderInputError(f"{name}: lengths must be a 1-d tensor of B={B} sample counts, got {shape}")
        if torch.is_floating_point(lengths):
            raise AudioEncoderInputError(f"{name}: lengths must be integer sample counts, got {lengths.dtype}")
        lengths = lengths.long().to(wav.device)
        bad = [(i, int(n)) for i, n in enumerate(lengths.tolist()) if n < 1 or n > L]
        if bad:
            i, n = bad[0]
            raise AudioEncoderInputError(
                f"{name}: lengths[{i}] = {n} is outside [1, L={L}] ({len(bad)} bad row(s)); an empty clip cannot be encoded"
            )
        if not bool(torch.isfinite(wav).all()):
            rows = sorted({int(r) for r in (~torch.isfinite(wav)).nonzero()[:, 0].tolist()})
            raise AudioEncoderInputError(f"{name}: audio holds NaN/Inf samples in row(s) {rows[:10]}")
        return lengths

    def meta(self) -> Dict[str, Any]:
        """Facts written beside the conf in component.yaml."""
        return dict(
            sample_rate=int(self.sample_rate),
            frame_rate=float(self.frame_rate),
            output_size=int(self.output_size),
            frozen=bool(self._frozen),
        )
