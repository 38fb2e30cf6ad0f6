"""Training wrapper of ``mini_rvq`` for ESPnet's GAN codec task and ``GANTrainer``.

Implements espnet2's ``AbsGANCodec`` contract: ``forward(audio [B, L], forward_generator)``
returns ``dict(loss, stats, weight, optim_idx)``; ``generator`` is the :class:`MiniRVQCodec`
that is exported as the trained codec; ``discriminator`` is None unless ``adversarial`` is on.

Generator loss = ``lambda_time`` * L1(wav) + ``lambda_mel`` * multi-scale mel loss (espnet2's
``MultiScaleMelSpectrogramLoss``, n_fft 64..1024) + ``lambda_commit`` * commitment
+ ``lambda_sisdr`` * (-SI-SDR in dB)
[+ ``lambda_adv`` * adversarial + ``lambda_feat_match`` * feature matching with espnet2's
HiFi-GAN multi-scale multi-period discriminator and losses].

Without ``adversarial`` the task builds a single optimizer and the recipe sets
``skip_discriminator_prob: 1.0`` so the trainer never runs a discriminator turn.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from espnet2.gan_codec.abs_gan_codec import AbsGANCodec
from espnet2.gan_codec.shared.loss.freq_loss import MultiScaleMelSpectrogramLoss
from espnet2.gan_tts.hifigan.hifigan import HiFiGANMultiScaleMultiPeriodDiscriminator
from espnet2.gan_tts.hifigan.loss import (
    DiscriminatorAdversarialLoss,
    FeatureMatchLoss,
    GeneratorAdversarialLoss,
)
from typeguard import typechecked

from ualm_tk.codec.mini_rvq import MiniRVQCodec

SMALL_DISCRIMINATOR = dict(
    scales=2,
    scale_discriminator_params=dict(
        in_channels=1, out_channels=1, kernel_sizes=[15, 41, 5, 3], channels=16,
        max_downsample_channels=128, max_groups=4, bias=True, downsample_scales=[2, 2, 4, 4, 1],
        nonlinear_activation="LeakyReLU", nonlinear_activation_params={"negative_slope": 0.1},
    ),
    periods=[2, 3, 5],
    period_discriminator_params=dict(
        in_channels=1, out_channels=1, kernel_sizes=[5, 3], channels=8,
        downsample_scales=[3, 3, 3, 3, 1], max_downsample_channels=128, bias=True,
        nonlinear_activation="LeakyReLU", nonlinear_activation_params={"negative_slope": 0.1},
        use_weight_norm=True, use_spectral_norm=False,
    ),
)


def neg_si_sdr_loss(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Training loss: minus the scale-invariant SDR in dB, averaged over the batch.

    ``est, ref [B, 1, L]``. Each clip counts equally whatever its level (an L1 loss is dominated
    by loud clips), and it rewards getting the waveform's phase right, which mel losses ignore.
    (The reported SI-SDR figures come from :func:`ualm_tk.scoring.reconstruction.si_sdr`.)
    """
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    ratio = (target.pow(2).sum(-1) + eps) / ((est - target).pow(2).sum(-1) + eps)
    return -(10 * torch.log10(ratio)).mean()


class MiniRVQGANCodec(AbsGANCodec):
    @typechecked
    def __init__(
        self,
        codec_conf: Optional[Dict[str, Any]] = None,
        adversarial: bool = False,
        discriminator_params: Optional[Dict[str, Any]] = None,
        lambda_time: float = 1.0,
        lambda_mel: float = 1.0,
        lambda_commit: float = 1.0,
        lambda_sisdr: float = 0.0,
        lambda_adv: float = 1.0,
        lambda_feat_match: float = 2.0,
    ):
        super().__init__()
        self.generator = MiniRVQCodec(**(codec_conf or {}))
        self.discriminator = (
            HiFiGANMultiScaleMultiPeriodDiscriminator(**(discriminator_params or SMALL_DISCRIMINATOR))
            if adversarial
            else None
        )
        self.adversarial = adversarial
        self.mel_loss = MultiScaleMelSpectrogramLoss(
            fs=self.generator.sample_rate, range_start=6, range_end=11, n_mels=64
        )
        if adversarial:
            self.gen_adv_loss = GeneratorAdversarialLoss(loss_type="mse")
            self.dis_adv_loss = DiscriminatorAdversarialLoss(loss_type="mse")
            self.feat_match_loss = FeatureMatchLoss()
        self.lambda_time = lambda_time
        self.lambda_mel = lambda_mel
        self.lambda_commit = lambda_commit
        self.lambda_sisdr = lambda_sisdr
        self.lambda_adv = lambda_adv
        self.lambda_feat_match = lambda_feat_match
        self._cache = None  # (wav, wav_hat) of the last generator turn, for the discriminator

    def meta_info(self) -> Dict[str, Any]:
        return self.generator.meta()

    def encode(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.generator.encode(x)

    def decode(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.generator.decode(x)

    def forward(self, audio: torch.Tensor, forward_generator: bool = True, **kwargs) -> Dict[str, Any]:
        """``audio [B, L]`` (or ``[B, 1, L]``) -> generator or discriminator loss dict."""
        wav = audio.unsqueeze(1) if audio.dim() == 2 else audio  # [B, 1, L]
        if forward_generator:
            return self._forward_generator(wav)
        return self._forward_discriminator(wav)

    def _forward_generator(self, wav: torch.Tensor) -> Dict[str, Any]:
        wav_hat, codes, commit = self.generator.forward_train(wav)
        wav_hat = wav_hat[..., : wav.shape[-1]]  # drop the hop padding
        l_time = F.l1_loss(wav_hat, wav)
        l_mel = self.mel_loss(wav_hat, wav)
        loss = self.lambda_time * l_time + self.lambda_mel * l_mel + self.lambda_commit * commit
        stats = dict(
            time_l1=l_time.item(), mel_loss=l_mel.item(), commit_loss=commit.item(),
            num_quantizers=float(codes.shape[1]),
            code_restarts=float(self.generator.quantizer.last_restarts),
        )
        if self.lambda_sisdr > 0:
            l_sisdr = neg_si_sdr_loss(wav_hat, wav)
            loss = loss + self.lambda_sisdr * l_sisdr
            stats["neg_si_sdr"] = l_sisdr.item()
        if self.adversarial:
            p_hat = self.discriminator(wav_hat)
            with torch.no_grad():
                p = self.discriminator(wav)
            l_adv = self.gen_adv_loss(p_hat)
            l_fm = self.feat_match_loss(p_hat, p)
            loss = loss + self.lambda_adv * l_adv + self.lambda_feat_match * l_fm
            stats.update(adv_loss=l_adv.item(), feat_match_loss=l_fm.item())
            if self.training:
                self._cache = (wav, wav_hat.detach())
        stats["generator_loss"] = loss.item()
        stats["loss"] = loss.item()
        return dict(loss=loss, stats=stats, weight=torch.tensor(float(wav.shape[0])), optim_idx=0)

    def _forward_discriminator(self, wav: torch.Tensor) -> Dict[str, Any]:
        weight = torch.tensor(float(wav.shape[0]))
        if not self.adversarial:
            if self.training:
                raise RuntimeError(
                    "mini_rvq was built with adversarial: false, so it has no discriminator to "
                    "train; set skip_discriminator_prob: 1.0 in the training config"
                )
            return dict(loss=torch.zeros(()), stats={}, weight=weight, optim_idx=1)
        if self._cache is not None and self._cache[0].shape == wav.shape:
            wav_hat = self._cache[1]
        else:
            with torch.no_grad():
                wav_hat = self.generator.forward_train(wav)[0][..., : wav.shape[-1]]
        self._cache = None
        p_hat = self.discriminator(wav_hat.detach())
        p = self.discriminator(wav)
        real_loss, fake_loss = self.dis_adv_loss(p_hat, p)
        loss = real_loss + fake_loss
        stats = dict(discriminator_loss=loss.item(), real_loss=real_loss.item(), fake_loss=fake_loss.item())
        return dict(loss=loss, stats=stats, weight=weight, optim_idx=1)
