"""Tiny instances of every registered codec, built offline (shared by the codec tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from ualm_tk.codec import AbsCodec, build_codec

TINY_MINI = dict(channels=[4, 8, 8, 16], latent_dim=8, num_codebooks=4, codebook_size=16, kmeans_iters=2)

TINY_DAC = dict(
    model="dac",
    model_conf=dict(
        sampling_rate=16000,
        generator_params=dict(encdec_n_filters=4, quantizer_n_q=4, quantizer_bins=32, encdec_ratios=[8, 5, 4, 2],
                              quantizer_target_bandwidth=[0.5, 1.0], hidden_dim=16, encdec_lstm=1),
        discriminator_params=dict(msmpmb_discriminator_params=dict(sample_rate=16000)),
        mel_loss_params=dict(n_mels=40),
    ),
)


def make_tiny_xcodec_dir(out_dir: Path) -> Path:
    """A random X-Codec (small DAC acoustic + 1-layer HuBERT semantic, codebook 64) saved with save_pretrained."""
    from transformers import XcodecConfig, XcodecModel

    cfg = XcodecConfig(
        target_bandwidths=[0.3, 0.6, 1.2],  # 1, 2, 4 codebooks of 64 entries at 50 frames/s
        codebook_size=64,
        acoustic_model_config=dict(
            encoder_hidden_size=8, decoder_hidden_size=16, hidden_size=16, downsampling_ratios=[8, 5, 4, 2],
            upsampling_ratios=[8, 5, 4, 2], codebook_size=64, codebook_dim=8, n_codebooks=2,
        ),
        semantic_model_config=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=[32] * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        ),
    )
    torch.manual_seed(0)
    model = XcodecModel(cfg).eval()
    # transformers initialises X-Codec codebooks to zeros (a real checkpoint brings its own):
    # give them random entries so that every codebook changes the decoded audio
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("codebook.embed"):
                buf.copy_(torch.randn_like(buf))
    model.save_pretrained(out_dir)
    return out_dir


def build_tiny(name: str, tmp_dir: Path) -> AbsCodec:
    """A tiny codec of registry ``name`` with non-trivial codebooks, in eval mode."""
    torch.manual_seed(0)
    if name == "mini_rvq":
        codec = build_codec("mini_rvq", TINY_MINI)
        codec.train()
        codec.forward_train(0.3 * torch.randn(2, 1, 8000))  # k-means initialises the codebooks
    elif name == "espnet_gan":
        codec = build_codec("espnet_gan", TINY_DAC)
    elif name == "xcodec":
        codec = build_codec("xcodec", dict(model_dir=str(make_tiny_xcodec_dir(tmp_dir / "xcodec_hf")), bandwidth=1.2))
    else:
        raise KeyError(f"no tiny recipe for codec '{name}': add one to test/codec/codec_tiny_models.py")
    return codec.eval()
