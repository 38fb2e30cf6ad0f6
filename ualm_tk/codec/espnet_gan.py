"""``espnet_gan``: the espnet2.gan_codec models (SoundStream / EnCodec / DAC / FunCodec) as codecs.

Conf: ``model: dac`` (one of :data:`ESPNET_MODELS`) and ``model_conf:`` the keyword arguments of
that espnet2 class. ``generator_params`` is merged (recursively) over espnet's default, so a YAML
only lists what it changes (espnet itself replaces the whole dict); other dict arguments replace
espnet's default as in espnet (note: espnet's default ``discriminator_params`` of ``encodec`` is
stale, so an EnCodec conf must give ``discriminator_params: {msstft_discriminator_params: ...}``). Training goes through :class:`ualm_tk.tasks.codec.CodecTask` and ESPnet's
``GANTrainer``; the exported component keeps the whole espnet model (generator + discriminator)
so it can be fine-tuned again, and uses only the generator here.

espnet's codes are ``[K, B, T]``; this wrapper returns ``[B, K, T]``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, Optional

import torch
from typeguard import typechecked

from ualm_tk.codec.abs_codec import AbsCodec, StoredGeometry


def espnet_models() -> Dict[str, type]:
    from espnet2.gan_codec.dac.dac import DAC
    from espnet2.gan_codec.encodec.encodec import Encodec
    from espnet2.gan_codec.funcodec.funcodec import FunCodec
    from espnet2.gan_codec.soundstream.soundstream import SoundStream

    return dict(soundstream=SoundStream, encodec=Encodec, dac=DAC, funcodec=FunCodec)


ESPNET_MODELS = ("soundstream", "encodec", "dac", "funcodec")


def merged_conf(model_class: type, model_conf: Dict[str, Any]) -> Dict[str, Any]:
    """``model_conf`` with ``generator_params`` merged (recursively) over espnet's default."""

    def merge(default: Any, given: Any) -> Any:
        if isinstance(default, dict) and isinstance(given, dict):
            out = copy.deepcopy(default)
            for k, v in given.items():
                out[k] = merge(default.get(k), v)
            return out
        return copy.deepcopy(given)

    sig = inspect.signature(model_class.__init__)
    out = {}
    for k, v in model_conf.items():
        if k not in sig.parameters:
            raise ValueError(f"{model_class.__name__} has no argument '{k}' "
                             f"(choose from {sorted(p for p in sig.parameters if p != 'self')})")
        out[k] = merge(sig.parameters[k].default, v) if k == "generator_params" else copy.deepcopy(v)
    return out


class ESPnetGANCodec(StoredGeometry, AbsCodec):
    @typechecked
    def __init__(self, model: str = "dac", model_conf: Optional[Dict[str, Any]] = None):
        super().__init__()
        classes = espnet_models()
        if model not in classes:
            raise ValueError(f"espnet_gan: unknown model '{model}', choose one of {sorted(classes)}")
        conf = merged_conf(classes[model], dict(model_conf or {}))
        self.conf = dict(model=model, model_conf=conf)
        self.model = classes[model](**conf)
        info = self.model.meta_info()
        self._sample_rate = int(info["fs"])
        self._hop = int(info["frame_shift"])
        self._codebook_size = int(info["code_size_per_stream"][0])
        # streams at the highest bandwidth: may be fewer than quantizer_n_q
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            k = self.model.encode(torch.zeros(1, 1, self._hop * 2)).shape[0]
        self.model.train(was_training)
        self._num_codebooks = int(k)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        wav = self.pad_to_hop(wav)
        codes = self.model.encode(wav)  # [K, B, T]
        return codes.permute(1, 0, 2)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        wav = self.model.decode(codes.permute(1, 0, 2))  # [B, 1, L]
        return wav if wav.dim() == 3 else wav.unsqueeze(1)
