"""From encoder features to LM embeddings: the adapter, and writing frames into placeholders.

* :class:`AudioAdapter` maps ``feats [B, T', D_enc]`` to ``[B, T', D_lm]``: one linear layer
  (the paper's adapter, ``num_layers=1``) or a 2-layer MLP (Linear - GELU - Linear). With
  ``mix_layers=H`` it takes the encoder's hidden layers ``[H, B, T', D_enc]`` and first forms their
  weighted sum with learned softmax weights (zero-initialised: the mean; SUPERB-style), so a frozen
  encoder's lower layers (e.g. pitch that the top layer learnt to drop) reach the LM too.
* :func:`placeholder_mask` finds the ``<audio_feats>`` positions of a token matrix ``[B, S, K]``.
* :func:`pack_segments` gathers the clips of each row (several audio segments per row) into one
  row of frames, in order.
* :func:`insert_features` writes those frames into the placeholder positions, in order.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from ualm_tk.tokens import specials as sp


class FeatureInsertionError(ValueError):
    """Placeholders and encoder frames do not match (shape, dtype or per-row count)."""


class AudioAdapter(torch.nn.Module):
    """``feats [B, T', input_size]`` (or ``[H, B, T', input_size]`` with ``mix_layers=H``) -> ``[B, T', output_size]``."""

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int,
        num_layers: int = 1,
        hidden_size: Optional[int] = None,
        mix_layers: Optional[int] = None,
    ):
        super().__init__()
        if mix_layers is not None and mix_layers < 1:
            raise ValueError(f"adapter: mix_layers must be >= 1 (the encoder's hidden layers), got {mix_layers}")
        self.mix_layers = mix_layers
        # [H] logits of the layer weights; softmax(0) = the plain mean of the layers
        self.layer_weights = torch.nn.Parameter(torch.zeros(mix_layers)) if mix_layers else None
        if input_size < 1 or output_size < 1:
            raise ValueError(f"adapter: sizes must be positive, got input {input_size}, output {output_size}")
        if num_layers == 1:
            if hidden_size is not None:
                raise ValueError("adapter: hidden_size is only used with num_layers=2")
            self.net = torch.nn.Linear(input_size, output_size)
        elif num_layers == 2:
            hidden = hidden_size or output_size
            self.net = torch.nn.Sequential(
                torch.nn.Linear(input_size, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, output_size)
            )
        else:
            raise ValueError(f"adapter: num_layers must be 1 (linear) or 2 (MLP), got {num_layers}")
        self.input_size = input_size
        self.output_size = output_size

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.layer_weights is not None:
            if feats.dim() != 4 or feats.shape[0] != self.mix_layers:
                raise FeatureInsertionError(
                    f"adapter: mixes {self.mix_layers} encoder layers, so it takes [H={self.mix_layers}, B, T', D], "
                    f"got {tuple(feats.shape)}"
                )
            w = self.layer_weights.softmax(0).to(feats.dtype)  # [H]
            feats = torch.einsum("h,hbtd->btd", w, feats)  # [B, T', D]
        if feats.shape[-1] != self.input_size:
            raise FeatureInsertionError(
                f"adapter: features have width {feats.shape[-1]}, the adapter takes {self.input_size} "
                "(audio_encoder output_size and adapter input_size disagree)"
            )
        return self.net(feats)


def placeholder_mask(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens [B, S, K]`` (or ``[B, S]``) -> ``[B, S]`` bool, True at ``<audio_feats>`` in stream 0."""
    t = tokens[..., 0] if tokens.dim() == 3 else tokens
    return t == sp.AUDIO_FEATS


def pack_segments(
    feats: torch.Tensor, feat_lengths: torch.Tensor, row_of_clip: Sequence[int], num_rows: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the clips of each row, in the order given.

    ``feats [N, T, D]``, ``feat_lengths [N]`` (one entry per clip, e.g. the encoder's output for
    all audio segments of a batch), ``row_of_clip[n]`` the batch row clip ``n`` belongs to ->
    ``(row_feats [num_rows, T'', D], row_lengths [num_rows])``; rows without audio get length 0.
    """
    if feats.dim() != 3 or feat_lengths.dim() != 1 or feat_lengths.shape[0] != feats.shape[0]:
        raise FeatureInsertionError(
            f"pack_segments: feats must be [N, T, D] with feat_lengths [N], got {tuple(feats.shape)} "
            f"and {tuple(feat_lengths.shape)}"
        )
    if len(row_of_clip) != feats.shape[0]:
        raise FeatureInsertionError(f"pack_segments: {len(row_of_clip)} row indices for {feats.shape[0]} clips")
    bad = [r for r in row_of_clip if not 0 <= int(r) < num_rows]
    if bad:
        raise FeatureInsertionError(f"pack_segments: row index {bad[0]} outside [0, {num_rows})")
    lens = [int(n) for n in feat_lengths.tolist()]
    row_lengths = [0] * num_rows
    for r, n in zip(row_of_clip, lens):
        row_lengths[int(r)] += n
    out = feats.new_zeros(num_rows, max(max(row_lengths), 1), feats.shape[-1])
    filled = [0] * num_rows
    for n_clip, (r, n) in enumerate(zip(row_of_clip, lens)):
        r = int(r)
        out[r, filled[r] : filled[r] + n] = feats[n_clip, :n]
        filled[r] += n
    return out, torch.tensor(row_lengths, dtype=torch.long, device=feats.device)


def insert_features(
    embeds: torch.Tensor, placeholder_mask: torch.Tensor, feats: torch.Tensor, feat_lengths: torch.Tensor
) -> torch.Tensor:
    """Write encoder frames into the placeholder positions, in order; returns a new tensor.

    ``embeds [B, S, D]``, ``placeholder_mask [B, S]`` (bool, True at ``<audio_feats>``),
    ``feats [B, T', D]`` with ``feat_lengths [B]`` valid frames per row (the frames of all audio
    segments of that row, concatenated in order: see :func:`pack_segments`). Row ``b``'s ``j``-th
    placeholder gets ``feats[b, j]``; the number of placeholders of every row must equal its
    ``feat_lengths``. Gradients flow into ``feats`` (and into ``embeds`` at the other positions).
    """
    if embeds.dim() != 3:
        raise FeatureInsertionError(f"insert_features: embeds must be [B, S, D], got {tuple(embeds.shape)}")
    B, S, D = embeds.shape
    if placeholder_mask.shape != (B, S) or placeholder_mask.dtype != torch.bool:
        raise FeatureInsertionError(
            f"insert_features: placeholder_mask must be bool [B={B}, S={S}], got {placeholder_mask.dtype} "
            f"{tuple(placeholder_mask.shape)}"
        )
    if feats.dim() != 3 or feats.shape[0] != B or feats.shape[2] != D:
        raise FeatureInsertionError(
            f"insert_features: feats must be [B={B}, T', D={D}], got {tuple(feats.shape)} "
            "(adapt the encoder output to the LM width first)"
        )
    if feat_lengths.shape != (B,):
        raise FeatureInsertionError(f"insert_features: feat_lengths must be [B={B}], got {tuple(feat_lengths.shape)}")
    counts = placeholder_mask.sum(dim=1).tolist()
    lens = feat_lengths.tolist()
    bad = [(b, c, n) for b, (c, n) in enumerate(zip(counts, lens)) if c != n or n > feats.shape[1]]
    if bad:
        msg = "; ".join(
            f"row {b}: {c} <audio_feats> placeholders but {n} valid frames"
            + (f" (feats hold only {feats.shape[1]})" if n > feats.shape[1] else "")
            for b, c, n in bad[:5]
        )
        raise FeatureInsertionError(f"insert_features: placeholder/frame count mismatch: {msg}")
    valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < feat_lengths.to(feats.device)[:, None]
    frames = feats[valid].to(embeds.dtype)  # [sum(lens), D], row-major = row order, then time order
    return embeds.masked_scatter(placeholder_mask[:, :, None], frames)
