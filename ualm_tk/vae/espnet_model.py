"""GAN training wrapper of an enhancement VAE for ESPnet's ``GANTrainer``.

Generator turn (optimizer 0, the VAE's parameters)::

    loss = lambda_sc * SC + lambda_mag * logmag   (multi-resolution STFT)
         + lambda_mel * mel L1 + lambda_adv * adversarial + lambda_fm * feature matching
         + lambda_kl * KL(q(z | wav_lo) || N(0, I))

Discriminator turn (optimizer 1): ESPnet's discriminator adversarial loss on the master
(real) and the detached VAE output (fake). The generator output of the discriminator turn is
cached and reused by the following generator turn of the same batch (as ESPnet's HiFiGAN/VITS).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from espnet2.gan_codec.shared.discriminator.msstft_discriminator import MultiScaleSTFTDiscriminator
from espnet2.gan_tts.hifigan.hifigan import HiFiGANMultiPeriodDiscriminator
from espnet2.gan_tts.hifigan.loss import (
    DiscriminatorAdversarialLoss,
    FeatureMatchLoss,
    GeneratorAdversarialLoss,
    MelSpectrogramLoss,
)
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_gan_espnet_model import AbsGANESPnetModel
from typeguard import typechecked

from ualm_tk.vae.abs_vae import AbsVAE
from ualm_tk.vae.losses import MultiResolutionSTFTLoss

DISCRIMINATORS = ("msstft", "hifigan_mpd")


def build_discriminator(kind: str, channels: int, params: Dict[str, Any]) -> torch.nn.Module:
    """ESPnet discriminator over waveforms ``[B, channels, L]``."""
    params = dict(params)
    if kind == "msstft":
        params.setdefault("filters", 16)
        return MultiScaleSTFTDiscriminator(in_channels=channels, **params)
    if kind == "hifigan_mpd":
        disc = dict(params.pop("discriminator_params", {}))
        disc.setdefault("channels", 16)
        disc.setdefault("max_downsample_channels", 256)
        disc["in_channels"] = channels
        defaults = dict(
            out_channels=1, kernel_sizes=[5, 3], downsample_scales=[3, 3, 3, 3, 1], bias=True,
            nonlinear_activation="LeakyReLU", nonlinear_activation_params={"negative_slope": 0.1},
            use_weight_norm=True, use_spectral_norm=False,
        )
        for k, v in defaults.items():
            disc.setdefault(k, v)
        return HiFiGANMultiPeriodDiscriminator(discriminator_params=disc, **params)
    raise ValueError(f"unknown discriminator_type {kind!r}; choose one of {DISCRIMINATORS}")


class ESPnetVAEModel(AbsGANESPnetModel):
    """Generator = the VAE, discriminator = an ESPnet multi-scale STFT or multi-period one."""

    @typechecked
    def __init__(
        self,
        vae: AbsVAE,
        discriminator_type: str = "msstft",
        discriminator_params: Optional[Dict[str, Any]] = None,
        mrstft_params: Optional[Dict[str, Any]] = None,
        mel_params: Optional[Dict[str, Any]] = None,
        adv_loss_type: str = "mse",
        lambda_sc: float = 1.0,
        lambda_mag: float = 1.0,
        lambda_mel: float = 1.0,
        lambda_adv: float = 1.0,
        lambda_fm: float = 2.0,
        lambda_kl: float = 0.001,
        cache_generator_outputs: bool = True,
    ):
        super().__init__()
        self.vae = vae
        self.discriminator = build_discriminator(
            discriminator_type, vae.channels, discriminator_params or {}
        )
        self.mrstft_loss = MultiResolutionSTFTLoss(**(mrstft_params or {}))
        mel = dict(fs=vae.output_sample_rate, n_fft=2048, hop_length=512, n_mels=128)
        mel.update(mel_params or {})
        self.mel_loss = MelSpectrogramLoss(**mel)
        self.generator_adv_loss = GeneratorAdversarialLoss(loss_type=adv_loss_type)
        self.discriminator_adv_loss = DiscriminatorAdversarialLoss(loss_type=adv_loss_type)
        self.feat_match_loss = FeatureMatchLoss()
        self.lambdas = dict(
            sc=lambda_sc, mag=lambda_mag, mel=lambda_mel, adv=lambda_adv, fm=lambda_fm, kl=lambda_kl
        )
        self.cache_generator_outputs = cache_generator_outputs
        self._cache = None

    @staticmethod
    def _pair(wav_lo: torch.Tensor, wav_hi: torch.Tensor):
        # wav_lo [B, L] -> [B, 1, L]; wav_hi [B, L', C] or [B, L'] -> [B, C, L']
        lo = wav_lo.unsqueeze(1)
        hi = wav_hi.unsqueeze(1) if wav_hi.dim() == 2 else wav_hi.transpose(1, 2)
        return lo, hi

    def _generate(self, lo: torch.Tensor, hi: torch.Tensor):
        reuse = self.cache_generator_outputs and self._cache is not None
        if reuse:
            wav_hat, kl = self._cache
        else:
            wav_hat, kl = self.vae(lo, sample=self.training)
        if self.cache_generator_outputs and not reuse and self.training:
            self._cache = (wav_hat, kl)
        else:
            self._cache = None
        n = min(wav_hat.shape[-1], hi.shape[-1])
        return wav_hat[..., :n], hi[..., :n], kl

    def forward(
        self,
        wav_lo: torch.Tensor,
        wav_hi: torch.Tensor,
        wav_lo_lengths: Optional[torch.Tensor] = None,
        wav_hi_lengths: Optional[torch.Tensor] = None,
        forward_generator: bool = True,
        **kwargs,
    ) -> Dict[str, Any]:
        """``wav_lo [B, L]`` (input rate), ``wav_hi [B, L', C]`` (output rate) -> loss dict."""
        lo, hi = self._pair(wav_lo, wav_hi)
        if hi.shape[1] != self.vae.channels:
            raise ValueError(
                f"wav_hi has {hi.shape[1]} channels, the VAE outputs {self.vae.channels} "
                f"(the preprocessor applies the channel policy)"
            )
        batch_size = lo.shape[0]
        if forward_generator:
            return self._forward_generator(lo, hi, batch_size)
        return self._forward_discriminator(lo, hi, batch_size)

    def _forward_generator(self, lo, hi, batch_size) -> Dict[str, Any]:
        wav_hat, hi, kl = self._generate(lo, hi)
        lam = self.lambdas
        sc, mag = self.mrstft_loss(wav_hat, hi)
        flat_hat = wav_hat.reshape(-1, 1, wav_hat.shape[-1])  # [B*C, 1, L']
        flat = hi.reshape(-1, 1, hi.shape[-1])
        mel = self.mel_loss(flat_hat, flat)
        p_hat = self.discriminator(wav_hat)
        with torch.no_grad():
            p = self.discriminator(hi)
        adv = self.generator_adv_loss(p_hat)
        fm = self.feat_match_loss(p_hat, p)
        loss = (
            lam["sc"] * sc + lam["mag"] * mag + lam["mel"] * mel
            + lam["adv"] * adv + lam["fm"] * fm + lam["kl"] * kl
        )
        stats = dict(
            generator_loss=loss.item(),
            mrstft_loss=(sc + mag).item(),
            spectral_convergence_loss=sc.item(),
            log_magnitude_loss=mag.item(),
            mel_loss=mel.item(),
            adversarial_loss=adv.item(),
            feat_match_loss=fm.item(),
            kl_loss=kl.item(),
        )
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return dict(loss=loss, stats=stats, weight=weight, optim_idx=0)

    def _forward_discriminator(self, lo, hi, batch_size) -> Dict[str, Any]:
        wav_hat, hi, _ = self._generate(lo, hi)
        p_hat = self.discriminator(wav_hat.detach())
        p = self.discriminator(hi)
        real, fake = self.discriminator_adv_loss(p_hat, p)
        loss = real + fake
        stats = dict(discriminator_loss=loss.item(), real_loss=real.item(), fake_loss=fake.item())
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return dict(loss=loss, stats=stats, weight=weight, optim_idx=1)

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No features to normalise: the VAE works on raw waveforms."""
        return {}
