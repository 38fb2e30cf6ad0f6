"""``laion_clap``: LAION-CLAP (HTSAT audio + RoBERTa text) through ``transformers.ClapModel``.

``model_dir`` is a local Hugging Face directory (``config.json``, weights, ``preprocessor_config.json``,
tokenizer files) — the format of the converted LAION checkpoints on the Hub (e.g.
``laion/clap-htsat-unfused``, ``laion/larger_clap_music_and_speech``), copied to local disk by the
user. LAION's original training checkpoints (``630k-audioset-best.pt`` with ``module.audio_branch``
keys) are NOT read directly: convert them first with the conversion script that ships with
``transformers`` (``models/clap/convert_clap_original_pytorch_to_hf.py``). Loading reports
missing/unexpected/mis-shaped weights as :class:`CheckpointKeyError` instead of silently
initialising them. Honesty note: tested only on tiny random ``ClapConfig`` models saved by the
tests; real checkpoints follow the same code path but were not available offline.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from typeguard import typechecked

from ualm_tk.scoring.models.abs_scorer import AbsScorer
from ualm_tk.scoring.models.checkpoints import CheckpointKeyError

logger = logging.getLogger(__name__)


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class LaionClap(AbsScorer):
    saves_weights = False

    @typechecked
    def __init__(self, model_dir: Optional[str] = None):
        super().__init__()
        if not model_dir:
            raise ValueError("laion_clap: model_dir (a local Hugging Face CLAP directory) is required")
        d = Path(model_dir)
        if not (d / "config.json").is_file():
            raise FileNotFoundError(f"laion_clap: {d}/config.json missing; model_dir must be a local HF CLAP directory")
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        self.conf = dict(model_dir=str(model_dir))
        model, info = ClapModel.from_pretrained(str(d), output_loading_info=True)
        bad = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
        if bad:
            raise CheckpointKeyError(
                f"laion_clap: weights in {d} do not match its config.json: "
                + " | ".join(f"{k} ({len(v)}): {sorted(map(str, v))[:8]}" for k, v in bad.items())
            )
        self.model = model.eval()
        self.feature_extractor = ClapFeatureExtractor.from_pretrained(str(d))
        self.tokenizer = AutoTokenizer.from_pretrained(str(d))

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @torch.no_grad()
    def embed_audio(self, wav, sr: int) -> np.ndarray:
        """Clips longer than the extractor's ``max_length_s`` are cut into consecutive windows whose
        embeddings are averaged (deterministic; no random crop or fusion); shorter ones are repeat-padded."""
        x = self.prepare(wav, sr).cpu().numpy()
        n = int(self.feature_extractor.nb_max_samples)
        chunks = [x[i: i + n] for i in range(0, len(x), n)]
        if len(chunks) > 1 and len(chunks[-1]) < n // 4:  # a short tail is folded into the previous window
            chunks = chunks[:-1]
        inp = self.feature_extractor(chunks, sampling_rate=self.sample_rate, return_tensors="pt",
                                     truncation="rand_trunc", padding="repeatpad")
        inp.pop("is_longer", None)
        e = torch.nn.functional.normalize(_features(self.model.get_audio_features(**inp)), dim=-1).mean(0)
        return torch.nn.functional.normalize(e, dim=-1).numpy().astype(np.float32)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        inp = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        e = _features(self.model.get_text_features(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"]))
        return torch.nn.functional.normalize(e, dim=-1).numpy().astype(np.float32)

    def embed_text(self, text: str) -> np.ndarray:
        return self.embed_texts([text])[0]

    def embed(self, wav, sr: int) -> np.ndarray:
        return self.embed_audio(wav, sr)
