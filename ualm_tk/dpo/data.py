"""DPO training data: pairs.json files -> batches of (chosen, rejected) rows for ESPnet's trainer.

* :class:`PairsDataset` renders both sides of a pair with the caption_to_audio template (no CFG
  dropout: DPO compares conditional generations). ``uncond_sides`` (:func:`uncond_sides`) adds
  the CFG unconditional form (caption -> ``<pad>``, loss on its audio) of the chosen side, for the
  DPO model's CE term that keeps the unconditional branch CFG needs trained, or of both sides, for
  DPO on guided log-probs. It offers the interface :class:`~ualm_tk.data.lm_dataset.LMIterFactory`
  buckets by (``lengths``, ``round_items``, ``token_shares``); a pair's length is
  ``R·max(S_chosen, S_rejected)`` with ``R`` its rows (2 to 4), the positions it adds to a padded batch.
* :func:`collate_pairs`: ``B`` pairs -> one batch of ``R·B`` rows, the B chosen rows first, then the
  B rejected rows in the same order, then the B unconditional rows of each side in ``uncond_sides``:
  ``tokens [RB,S,K]``, ``loss_mask [RB,S,K]``, ``lengths [RB]``, ``task_ids [RB]``.
* :class:`PairIterFactory`: LMIterFactory (bucketing, epochs, DDP sharding) with that collate.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ualm_tk.data.lm_dataset import LMIterFactory, collate
from ualm_tk.data.task_templates import TaskDataError, make_unconditional, stream_weights
from ualm_tk.dpo.pairs import PairsFile, load_pairs
from ualm_tk.patterns.abs_pattern import AbsPattern
from ualm_tk.tokens.layout import TokenLayout

logger = logging.getLogger(__name__)

SIDES = ("chosen", "rejected")


def uncond_sides(guidance_scale: Optional[float], uncond_ce_weight: float) -> Tuple[str, ...]:
    """Whose CFG unconditional rows a DPO batch carries, after its chosen and rejected rows.

    Guided DPO log-probs (``guidance_scale`` set) need both sides'; the unconditional CE term alone
    (``uncond_ce_weight > 0``) the chosen side's; plain DPO none.
    """
    if guidance_scale is not None:
        return SIDES
    return ("chosen",) if uncond_ce_weight > 0 else ()


class PairsDataset:
    """Map-style dataset over ``(item, round)``; item = one pair of one pairs.json."""

    def __init__(
        self,
        paths: Sequence[str],
        layout: TokenLayout,
        pattern: AbsPattern,
        pattern_name: str = "delay",
        max_len: Optional[int] = None,
        audio_weight: Optional[Any] = None,  # a number or one per stream (stream_weights)
        uncond_sides: Sequence[str] = (),  # sides whose CFG unconditional forms are added (module doc)
    ):
        if not paths:
            raise TaskDataError("no DPO pairs given (--train_data_path_and_name_and_type pairs.json,dpo,dpo_pairs)")
        # [K], resolved once: a bad data_conf.audio_weight fails here
        self.audio_weight = stream_weights(audio_weight, layout.num_codebooks)
        self.layout, self.pattern, self.max_len = layout, pattern, max_len
        if len(set(uncond_sides)) != len(uncond_sides) or not set(uncond_sides) <= set(SIDES):
            raise TaskDataError(f"uncond_sides must name distinct sides of {SIDES}, got {tuple(uncond_sides)}")
        self.uncond_sides = tuple(uncond_sides)
        rows_per_pair = len(SIDES) + len(self.uncond_sides)
        self.files: List[PairsFile] = []
        self.items: List[Tuple[int, str]] = []
        lengths = []
        for fi, path in enumerate(paths):
            pf = load_pairs(path)
            for side in (pf.chosen, pf.rejected):
                side.check_layout(layout)
                if side.pattern != pattern_name:
                    raise TaskDataError(f"{side.path}: lengths use pattern '{side.pattern}', the model uses '{pattern_name}'")
            for key in pf.keys():
                n = max(pf.chosen.length(key), pf.rejected.length(key))
                if max_len is not None and n > max_len:
                    raise TaskDataError(f"{path}: key '{key}': {n} positions, more than the model's context {max_len}")
                self.items.append((fi, key))
                lengths.append(rows_per_pair * n)
            self.files.append(pf)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        logger.info("DPO pairs: %d pairs from %s", len(self.items), ", ".join(paths))

    def __len__(self) -> int:
        return len(self.items)

    def round_items(self, rnd: int) -> np.ndarray:
        return np.arange(len(self.items))

    def token_shares(self, items) -> Dict[str, float]:
        return {"dpo_pairs": 1.0}

    def __getitem__(self, index: Tuple[int, int]) -> Dict[str, Any]:
        item, _ = index
        fi, key = self.items[int(item)]
        pf = self.files[fi]
        out = {"key": key}
        for side in SIDES:
            data = getattr(pf, side)
            ex = data.render(key, self.layout, self.pattern, audio_weight=self.audio_weight, max_len=self.max_len)
            if ex.audio_feats:
                raise TaskDataError(f"{data.path}: key '{key}': user audio in DPO pairs is not supported (caption_to_audio only)")
            out[side] = dict(key=key, task=data.task, tokens=ex.tokens, loss_mask=ex.loss_mask, audio=[])
            if side in self.uncond_sides:
                u = make_unconditional(ex)
                out["uncond_" + side] = dict(key=key, task=data.task, tokens=u.tokens, loss_mask=u.loss_mask, audio=[])
        return out


def collate_pairs(examples: Sequence[Dict[str, Any]]):
    """``B`` pairs -> ``(keys, batch)`` with ``R·B`` rows: chosen rows first, then rejected, then the unconditional
    rows of the chosen and then the rejected side, where the pairs carry them (module doc)."""
    order = SIDES + tuple("uncond_" + side for side in SIDES)
    parts = [p for p in order if p in examples[0]]
    if any([p for p in order if p in e] != parts for e in examples):
        raise TaskDataError("a DPO batch mixes pairs with different unconditional rows")
    rows = [e[p] for p in parts for e in examples]
    _, batch = collate(rows)
    return [e["key"] for e in examples], batch


class PairIterFactory(LMIterFactory):
    """Bucketed pair batches (see :class:`~ualm_tk.data.lm_dataset.LMIterFactory`)."""

    def build_iter(self, epoch: int, shuffle: Optional[bool] = None) -> Iterator:
        from torch.utils.data import DataLoader

        batches = self.epoch_batches(epoch)
        return DataLoader(self.dataset, batch_sampler=batches, collate_fn=collate_pairs, num_workers=self.num_workers)
