"""``mel_transformer_qa``: the ``mel_transformer`` encoder with its stage-5a heads, whose answers travel with its frames.

Stage 5a trains the encoder as a classifier (:mod:`ualm_tk.audio_encoder.qa_pretrain`): per categorical
question type an attention query over the frames and an MLP to the answers, and a frame head naming the
events that sound at each frame. A plain ``mel_transformer`` hands the LM its frames only and the LM has
to learn to read those answers again from one token of gradient per question: on the CPU recipe it
answers 76.8 % of the held-out categorical questions where the encoder's own heads answer 84.6 %, and it
gives the same answer to "which sound comes first" and "which comes last" for 43 of 52 test clips.
This encoder keeps the heads (frozen with the encoder) and appends, to every frame, what they say:

    feats [B,T',D] -> concat(feats,                         [B,T',D]
                             sigmoid(frame_head(feats)),    [B,T',C]  events sounding at each frame
                             softmax of every question head [B,T',A]  the clip's answers, same on every frame)
                   = [B,T', D + C + A]      (A = sum of num_answers; zeros past each row's frames)

The placeholders per clip stay the same (one per frame), so task data and sequences do not change. The
answers are the encoder's own posteriors (trained on the training clips' labels, never the test
clips'); the LM still has to find the slot a question asks about and turn it into words. The published
UALM feeds only Whisper frames. Measured on the CPU recipe (session 22: same 5a weights, 5b and blend as
the plain encoder's run): the LM answered 75.5 % (plain 76.8 %; last event 30.8 %, first event 61.5 %),
so the LM, not the information its frames carry, limits the audio questions there; the recipe keeps
``mel_transformer``. This encoder stays for that kind of experiment (classifier posteriors as LM input).

Conf: every ``mel_transformer`` key, plus ``num_answers`` (answers per categorical question type, in
``qtypes.json`` order: stage 5a checks it against the corpus and names the right list),
``num_event_classes`` (0: no frame head), ``qa_heads`` and ``qa_dropout`` (attention heads and dropout of the
question heads: stage 5a's ``num_heads`` / ``dropout``, which must equal them).
"""

from __future__ import annotations

from typing import Any, List

import torch
from typeguard import typechecked

from ualm_tk.audio_encoder.abs_audio_encoder import AbsAudioEncoder
from ualm_tk.audio_encoder.mel_transformer import MelTransformerEncoder
from ualm_tk.audio_encoder.qa_heads import QAHeads


class QAReadoutEncoder(AbsAudioEncoder):
    """``mel_transformer`` frames + its frame-event posteriors + its question heads' answer posteriors."""

    @typechecked
    def __init__(
        self,
        num_answers: List[int],
        num_event_classes: int = 0,
        qa_heads: int = 4,
        qa_dropout: float = 0.1,
        freeze: bool = False,
        **encoder_conf: Any,
    ):
        """``encoder_conf``: the ``mel_transformer`` keys (``size``, ``d_model``, ``dropout``, ...), checked by it."""
        super().__init__()
        if not num_answers or any(a < 2 for a in num_answers):
            raise ValueError(f"mel_transformer_qa: num_answers needs one entry >= 2 per question type, got {num_answers}")
        if num_event_classes < 0:
            raise ValueError(f"mel_transformer_qa: num_event_classes must be >= 0, got {num_event_classes}")
        # built in the order stage 5a's classifier builds its parts (encoder, question heads, frame head), so a
        # pre-training run through this encoder draws the same initial weights as one through mel_transformer
        self.base = MelTransformerEncoder(**encoder_conf)
        D = self.base.output_size
        self.heads = QAHeads(D, num_answers, qa_heads, qa_dropout)
        self.frame_head = torch.nn.Linear(D, num_event_classes) if num_event_classes else None
        self.conf = dict(self.base.conf, num_answers=list(num_answers), num_event_classes=num_event_classes,
                         qa_heads=qa_heads, qa_dropout=qa_dropout, freeze=freeze)
        self.readout_size = num_event_classes + sum(num_answers)
        if freeze:
            self.freeze()

    @property
    def sample_rate(self) -> int:
        return self.base.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.base.frame_rate

    @property
    def output_size(self) -> int:
        return self.base.output_size + self.readout_size

    @property
    def num_hidden_layers(self) -> int:
        return self.base.num_hidden_layers

    def readout(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """``feats [B,T',D]`` -> ``[B,T',C+A]``: frame-event posteriors, then the answer posteriors of every type."""
        B, T, _ = feats.shape
        keep = torch.arange(T, device=feats.device)[None, :] < feat_lengths.to(feats.device)[:, None]  # [B,T']
        answers = torch.cat([logits.softmax(-1) for logits in self.heads(feats, keep)], dim=-1)  # [B,A]
        parts = [answers[:, None, :].expand(B, T, answers.shape[-1])]
        if self.frame_head is not None:
            parts.insert(0, torch.sigmoid(self.frame_head(feats)))  # [B,T',C]
        return torch.cat(parts, dim=-1) * keep[:, :, None].to(feats.dtype)

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        feats = self.base._encode(wav, lengths, feat_lengths)  # [B,T',D]
        return torch.cat([feats, self.readout(feats, feat_lengths)], dim=-1)  # [B,T',D+C+A]

    def _encode_layers(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """Every hidden layer of the base, each with the readout of the last one: ``[H, B, T', D+C+A]``."""
        layers = self.base._encode_layers(wav, lengths, feat_lengths)  # [H,B,T',D]
        extra = self.readout(layers[-1], feat_lengths)  # [B,T',C+A]
        return torch.cat([layers, extra[None].expand(layers.shape[0], *extra.shape)], dim=-1)
