"""Sample n candidates per caption_to_audio prompt with a trained model (first step of DPO).

For each example of a caption_to_audio data.json (the training prompts), the user segments are
kept and the assistant audio segment is decoded afresh with
:func:`ualm_tk.models.generation.generate_from_segments` (``num_samples = n``, CFG, top-k,
temperature). Each prompt's draws are seeded by ``(seed, crc32(key))``, so a prompt gets the same
candidates whatever the sharding. Candidates that end before their first frame are dropped (and
counted). Outputs in ``out_dir``::

    codes.ark, codes.scp     candidate codes [T,K] int16/int32 (kaldiio, as dump/codes)
    utt2num_frames           frames per candidate
    cand2prompt              candidate key -> prompt key (candidate key = "<prompt>-cand<i>")
    wav/<cand>.wav, wav.scp  the candidates decoded by the codec (for the reward)
    sample_info.json         settings and counts
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file
from ualm_tk.data.task_data import TaskData
from ualm_tk.data.task_templates import Segment, TaskDataError

logger = logging.getLogger(__name__)


def prompt_segments(data: TaskData, key: str) -> List[Segment]:
    """The example's segments with the assistant audio answer replaced by a prompt placeholder."""
    segs = data.segments(key)
    if segs[-1].role != "assistant" or segs[-1].modality != "audio":
        raise TaskDataError(f"{data.path}: key '{key}': last segment is not an assistant audio segment")
    segs[-1] = Segment("assistant", "audio", codes="<prompt>", num_frames=1)
    return segs


def candidate_key(prompt: str, i: int) -> str:
    return f"{prompt}-cand{i}"


def prompt_seed(seed: int, key: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**31 - 1)


def shard_keys(keys: Sequence[str], num_shards: int, shard: int) -> List[str]:
    """Shard ``shard`` (1-based) of ``num_shards`` contiguous slices of the sorted keys."""
    if not 1 <= shard <= num_shards:
        raise ValueError(f"shard must be in 1..{num_shards}, got {shard}")
    keys = list(keys)
    bounds = np.linspace(0, len(keys), num_shards + 1).round().astype(int)
    return keys[bounds[shard - 1] : bounds[shard]]


def sample_candidates(
    model,
    data: TaskData,
    keys: Sequence[str],
    out_dir: Path,
    codec=None,
    num_samples: int = 4,
    guidance_scale: Optional[float] = 3.0,
    top_k: int = 20,
    temperature: float = 0.8,
    cfg_plausibility: float = 0.0,
    max_steps: int = 500,
    seed: int = 0,
) -> Dict[str, int]:
    """Write the candidates of ``keys`` (see module doc); returns counts."""
    import kaldiio
    import soundfile as sf

    from ualm_tk.models.generation import generate_from_segments

    if data.task != "caption_to_audio":
        raise TaskDataError(f"{data.path}: task {data.task}; DPO candidates are sampled for caption_to_audio")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    lay = model.layout
    data.check_layout(lay)
    if codec is not None and (codec.num_codebooks < lay.num_codebooks or codec.codebook_size != lay.codebook_size):
        raise ValueError(f"codec K={codec.num_codebooks}, N={codec.codebook_size}; the model has "
                         f"K={lay.num_codebooks}, N={lay.codebook_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = np.int16 if lay.codebook_size <= np.iinfo(np.int16).max else np.int32
    c2p, nframes, wavs = {}, {}, {}
    counts = {"prompts": 0, "candidates": 0, "empty": 0, "unfinished": 0}
    codec_device = next(codec.parameters(), torch.empty(0)).device if codec is not None else None
    ark, tmp_scp = out_dir / "codes.ark", out_dir / ".codes.scp.tmp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}", write_function="numpy") as writer:
        for key in tqdm(keys, desc=f"sample x{num_samples}", mininterval=5):
            gens = generate_from_segments(
                model, prompt_segments(data, key), guidance_scale=guidance_scale, top_k=top_k,
                temperature=temperature, max_steps=max_steps, num_samples=num_samples, seed=prompt_seed(seed, key),
                cfg_plausibility=cfg_plausibility,
            )
            counts["prompts"] += 1
            for i, g in enumerate(gens):
                if g.codes.shape[1] == 0:
                    counts["empty"] += 1
                    continue
                counts["unfinished"] += int(not g.finished)
                c = candidate_key(key, i)
                writer(c, g.codes.t().numpy().astype(dtype))  # [T,K]
                c2p[c], nframes[c] = key, str(int(g.codes.shape[1]))
                if codec is not None:
                    with torch.no_grad():
                        wav = codec.decode(g.codes[None, : lay.num_codebooks].to(codec_device))  # [1,1,L]
                    path = (out_dir / "wav" / f"{c}.wav").resolve()
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, wav[0, 0].cpu().numpy(), codec.sample_rate)
                    wavs[c] = str(path)
                counts["candidates"] += 1
    write_kaldi_file(out_dir / "codes.scp", read_kaldi_file(tmp_scp) if c2p else {})
    tmp_scp.unlink()
    write_kaldi_file(out_dir / "cand2prompt", c2p)
    write_kaldi_file(out_dir / "utt2num_frames", nframes)
    if codec is not None:
        write_kaldi_file(out_dir / "wav.scp", wavs)
    info = dict(counts, num_samples=num_samples, guidance_scale=guidance_scale, top_k=top_k,
                temperature=temperature, max_steps=max_steps, seed=seed, data_json=str(data.path))
    (out_dir / "sample_info.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("candidates: %s", counts)
    return counts
