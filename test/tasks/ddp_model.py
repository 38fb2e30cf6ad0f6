"""The tiny UALM model of the DDP tests (same seed -> same initial weights in every process)."""
import torch

from ualm_tk.audio_encoder import build_audio_encoder
from ualm_tk.lm import build_decoder
from ualm_tk.models import model_choices
from ualm_tk.patterns import build_pattern


def make_model(layout, seed: int = 0):
    """Decoder d=64 x 2 layers + tiny mel encoder, dropout off (gradients must be deterministic)."""
    torch.manual_seed(seed)
    dec = build_decoder("transformer", dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2))
    enc = build_audio_encoder("mel_transformer", dict(size="tiny", dropout=0.0))
    return model_choices.get_class("ualm")(layout=layout, decoder=dec, pattern=build_pattern("delay"),
                                           audio_encoder=enc)
