"""``whisper``: a Whisper-style encoder through ``transformers``, from a LOCAL directory.

Conf: ``model_dir`` — a ``save_pretrained`` directory of a ``WhisperModel`` or
``WhisperForConditionalGeneration`` with a ``WhisperFeatureExtractor`` saved beside it
(``preprocessor_config.json``); nothing is downloaded. ``pool`` (default 2) average-pools the
encoder's 50 frames/s to 25 frames/s, as the Qwen2-Audio / Qwen2.5-Omni audio towers do.
``freeze`` (default True): the paper's frozen encoder. ``dtype`` (default float32; released
checkpoints are stored in float16, which ``transformers`` 5 would otherwise keep).

Whisper always sees ``chunk_length`` seconds (30 s for the released models): each clip is cut
into chunks of that length, every chunk is zero-padded to the full window by the feature
extractor, encoded, pooled, and the frames that belong to the clip are kept (``ceil(len /
samples_per_frame)`` per chunk), then the chunks of a clip are concatenated. So a clip of ``L``
samples gives exactly ``ceil(L * 25 / 16000)`` frames whatever its length, and each clip is
encoded on its own (its features do not depend on the batch).

Only the encoder is kept (the decoder is dropped after loading). The component directory saved
by :func:`ualm_tk.audio_encoder.save_audio_encoder` holds ``component.yaml`` with ``model_dir``
made absolute; a frozen encoder's weights stay in ``model_dir``, an unfrozen (fine-tuned) one's
are written to ``model.pth`` as well.
"""

from __future__ import annotations

import logging
import os
from typing import List, Union

import torch
import torch.nn.functional as F
from typeguard import typechecked

from ualm_tk.audio_encoder.abs_audio_encoder import AbsAudioEncoder

logger = logging.getLogger(__name__)


class WhisperEncoder(AbsAudioEncoder):
    """Hugging Face Whisper encoder + feature extractor, pooled to 25 frames/s."""

    @typechecked
    def __init__(
        self, model_dir: Union[str, os.PathLike], pool: int = 2, freeze: bool = True, dtype: str = "float32"
    ):
        super().__init__()
        model_dir = os.fspath(model_dir)
        from transformers import WhisperFeatureExtractor, WhisperModel

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"whisper: model_dir {model_dir} is not a directory")
        for need, what in (("config.json", "the model (save_pretrained)"),
                           ("preprocessor_config.json", "the WhisperFeatureExtractor (save_pretrained)")):
            if not os.path.isfile(os.path.join(model_dir, need)):
                raise FileNotFoundError(f"whisper: {os.path.join(model_dir, need)} is missing; save {what} there")
        if pool < 1:
            raise ValueError(f"whisper: pool must be >= 1, got {pool}")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"whisper: dtype must be float32, bfloat16 or float16, got {dtype!r}")
        model, info = WhisperModel.from_pretrained(
            model_dir, local_files_only=True, output_loading_info=True, dtype=getattr(torch, dtype)
        )
        missing = sorted(k for k in info["missing_keys"] if not k.startswith("decoder."))
        if missing:
            raise ValueError(f"whisper: {model_dir} lacks encoder weights {missing[:5]} (is it a Whisper checkpoint?)")
        self.encoder = model.get_encoder()
        del model  # the decoder is not needed
        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
        fe, cfg = self.feature_extractor, self.encoder.config
        if fe.feature_size != cfg.num_mel_bins:
            raise ValueError(
                f"whisper: {model_dir}: feature extractor gives {fe.feature_size} mel bins, the encoder takes {cfg.num_mel_bins}"
            )
        conv_stride = self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0]  # 2
        if fe.nb_max_frames != cfg.max_source_positions * conv_stride:
            raise ValueError(
                f"whisper: {model_dir}: feature extractor window is {fe.nb_max_frames} mel frames "
                f"({fe.chunk_length} s), the encoder expects {cfg.max_source_positions * conv_stride}"
            )
        self.samples_per_frame = fe.hop_length * conv_stride * pool  # 640 at 16 kHz
        self.chunk_samples = int(fe.n_samples)
        if self.chunk_samples % self.samples_per_frame:
            raise ValueError(
                f"whisper: chunk of {self.chunk_samples} samples is not a multiple of {self.samples_per_frame} "
                f"samples per output frame; choose another pool than {pool}"
            )
        self.pool = pool
        self.conf = dict(model_dir=os.path.abspath(model_dir), pool=pool, freeze=freeze, dtype=dtype)
        logger.info(
            "whisper encoder from %s: %.2f M parameters, width %d, %.1f frames/s, %.1f s chunks",
            model_dir, sum(p.numel() for p in self.encoder.parameters()) / 1e6, cfg.d_model,
            self.frame_rate, self.chunk_samples / self.sample_rate,
        )
        if freeze:
            self.freeze()

    @property
    def saves_weights(self) -> bool:  # a fine-tuned encoder must travel with its weights
        return not self.frozen

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_frame

    @property
    def output_size(self) -> int:
        return int(self.encoder.config.d_model)

    @property
    def num_hidden_layers(self) -> int:
        return int(self.encoder.config.encoder_layers) + 1  # the embedded input, then every layer

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        return self._run(wav, lengths, feat_lengths, keep_layers=False)

    def _encode_layers(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        return self._run(wav, lengths, feat_lengths, keep_layers=True)

    def _run(self, wav: torch.Tensor, lengths: torch.Tensor, feat_lengths: torch.Tensor, keep_layers: bool) -> torch.Tensor:
        """``feats [B, T', D]``, or with ``keep_layers`` ``[H, B, T', D]``: Hugging Face's hidden states (the
        embedded input, every layer's output, the last one through the final LayerNorm), the others
        layer-normalised without affine weights so that the layers share one scale."""
        # cut every clip into chunk-sized pieces: pieces[i] = (row, samples [n])
        rows: List[int] = []
        pieces = []
        for b, n in enumerate(lengths.tolist()):
            clip = wav[b, 0, :n].detach().float().cpu().numpy()
            for s in range(0, n, self.chunk_samples):
                rows.append(b)
                pieces.append(clip[s : s + self.chunk_samples])
        fe_device = "cpu" if wav.device.type == "cpu" else str(wav.device)
        mel = self.feature_extractor(
            pieces, sampling_rate=self.sample_rate, return_tensors="pt", device=fe_device
        ).input_features  # [N, n_mels, window]
        p = next(self.encoder.parameters())
        out = self.encoder(mel.to(p.device, p.dtype), output_hidden_states=keep_layers)
        if keep_layers:
            *inner, last = out.hidden_states
            hidden = torch.stack([F.layer_norm(h, h.shape[-1:]) for h in inner] + [last], 0)  # [H, N, window/2, D]
        else:
            hidden = out.last_hidden_state[None]  # [1, N, window/2, D] at 50 Hz
        H, N, W, D = hidden.shape
        pooled = F.avg_pool1d(hidden.reshape(H * N, W, D).transpose(1, 2), self.pool, self.pool)
        pooled = pooled.transpose(1, 2).reshape(H, N, -1, D)  # [H, N, F, D] at 25 Hz
        feats = pooled.new_zeros(H, wav.shape[0], int(feat_lengths.max()), D)  # [H, B, T', D]
        filled = [0] * wav.shape[0]
        for i, (b, piece) in enumerate(zip(rows, pieces)):
            k = -(-len(piece) // self.samples_per_frame)
            feats[:, b, filled[b] : filled[b] + k] = pooled[:, i, :k]
            filled[b] += k
        assert filled == feat_lengths.tolist(), (filled, feat_lengths.tolist())
        feats = feats.to(wav.dtype)
        return feats if keep_layers else feats[0]
