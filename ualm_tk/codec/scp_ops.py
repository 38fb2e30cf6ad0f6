"""Codec operations over Kaldi ``wav.scp`` / ``codes.scp`` lists (stage 4 and resynthesis).

- :func:`tokenize_scp`: ``wav.scp`` -> ``codes.ark`` + ``codes.scp`` (kaldiio, NumPy-format entries
  readable by ``kaldiio.load_mat``; each entry an
  int16 (int32 if codebook_size > 32767) matrix ``[T, K]``: frames x codebooks, like Kaldi
  feature matrices) + ``utt2num_frames`` + ``codes_info.json`` (the codec's facts).
- :func:`decode_scp`: ``codes.scp`` -> ``wav/<utt>.wav`` + ``wav.scp``.
- :func:`resynth_scp`: ``wav.scp`` -> encode + decode -> ``wav/<utt>.wav`` (original length) + ``wav.scp``.

Audio must already have the codec's sample rate and one channel; otherwise the error names the
utterance and file, unless ``resample=True`` (then it is resampled and mixed down to mono).
Utterances are encoded one by one, or batched only with utterances of identical length, so the
codes of an utterance never depend on what it was batched with.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ualm_tk.audio.io import AudioError, load_audio, save_audio
from ualm_tk.audio.resample import apply_channel_policy, resample
from ualm_tk.codec.abs_codec import AbsCodec, CodecInputError
from ualm_tk.data.kaldi_files import read_kaldi_file, write_kaldi_file

logger = logging.getLogger(__name__)


class CodecDataError(RuntimeError):
    """An entry of a wav.scp / codes.scp cannot be processed; the message names key and file."""


def load_for_codec(key: str, path: str, codec: AbsCodec, resample_ok: bool) -> np.ndarray:
    """Read ``path`` for ``codec`` -> ``wav [1, L]`` float32; clear errors naming key and file."""
    try:
        wav, sr = load_audio(path)  # [C, L]
    except AudioError as e:
        raise CodecDataError(f"utterance '{key}': {e}") from None
    if wav.shape[0] != 1:
        if not resample_ok:
            raise CodecDataError(
                f"utterance '{key}': {path} has {wav.shape[0]} channels; the codec takes mono "
                f"(pass --resample true to mix down)"
            )
        wav = apply_channel_policy(wav, "mono")
    if sr != codec.sample_rate:
        if not resample_ok:
            raise CodecDataError(
                f"utterance '{key}': {path} is {sr} Hz; the codec takes {codec.sample_rate} Hz "
                f"(pass --resample true to resample)"
            )
        wav = resample(wav, sr, codec.sample_rate)
    if wav.shape[1] == 0:
        raise CodecDataError(f"utterance '{key}': {path} holds no samples")
    if not np.isfinite(wav).all():
        raise CodecDataError(f"utterance '{key}': {path} holds NaN/Inf samples")
    return wav


def _batches(lengths: Dict[str, int], batch_size: int) -> List[List[str]]:
    """Group keys of equal length into batches of at most ``batch_size`` (sorted key order)."""
    by_len: Dict[int, List[str]] = defaultdict(list)
    for k in sorted(lengths):
        by_len[lengths[k]].append(k)
    out = []
    for _, keys in sorted(by_len.items()):
        out += [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
    return out


def codes_dtype(codec: AbsCodec) -> np.dtype:
    return np.dtype(np.int16) if codec.codebook_size <= np.iinfo(np.int16).max else np.dtype(np.int32)


def tokenize_scp(
    codec: AbsCodec, wav_scp: Path, out_dir: Path, resample_ok: bool = False, batch_size: int = 1,
    device: str = "cpu",
) -> int:
    """Encode every entry of ``wav_scp``; returns the number of utterances written."""
    import kaldiio

    entries = read_kaldi_file(wav_scp)
    if not entries:
        raise CodecDataError(f"{wav_scp}: no entries")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # read everything first (a shard is small); fail before writing anything
    wavs = {k: load_for_codec(k, p, codec, resample_ok) for k, p in tqdm(entries.items(), desc="read", leave=False)}
    dtype = codes_dtype(codec)
    codes_out: Dict[str, np.ndarray] = {}
    for keys in tqdm(_batches({k: w.shape[1] for k, w in wavs.items()}, batch_size), desc=f"encode {wav_scp}"):
        x = torch.from_numpy(np.stack([wavs[k] for k in keys])).to(device)  # [B, 1, L]
        try:
            codes = codec.encode(x).cpu()  # [B, K, T]
        except CodecInputError as e:
            raise CodecDataError(f"utterances {keys}: {e}") from None
        for k, c in zip(keys, codes):
            codes_out[k] = c.t().numpy().astype(dtype)  # [T, K]
    ark, scp = out_dir / "codes.ark", out_dir / "codes.scp"
    tmp_scp = out_dir / ".codes.scp.tmp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}", write_function="numpy") as writer:
        for k in sorted(codes_out):
            writer(k, codes_out[k])
    # kaldiio writes keys in call order (sorted above); re-write through our writer for C order
    write_kaldi_file(scp, read_kaldi_file(tmp_scp))
    tmp_scp.unlink()
    write_kaldi_file(out_dir / "utt2num_frames", {k: str(v.shape[0]) for k, v in codes_out.items()})
    info = dict(codec.meta(), layout="[T, K]", dtype=str(dtype), num_utterances=len(codes_out))
    (out_dir / "codes_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    logger.info("wrote %d utterances to %s", len(codes_out), scp)
    return len(codes_out)


def read_codes(codes_scp: Path) -> Dict[str, np.ndarray]:
    """``codes.scp`` -> {key: codes [T, K] int}."""
    import kaldiio

    entries = read_kaldi_file(codes_scp)
    out = {}
    for k, spec in entries.items():
        try:
            arr = kaldiio.load_mat(spec)
        except Exception as e:  # kaldiio raises several types
            raise CodecDataError(f"{codes_scp}: utterance '{k}': cannot read {spec}: {e}") from None
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise CodecDataError(f"{codes_scp}: utterance '{k}': expected an integer matrix [T, K], "
                                 f"got {arr.dtype} {arr.shape}")
        out[k] = arr
    return out


def _write_wavs(out_dir: Path, wavs: Dict[str, np.ndarray], sample_rate: int) -> None:
    wav_dir = out_dir / "wav"
    scp = {}
    for k, w in wavs.items():
        path = (wav_dir / f"{k}.wav").resolve()
        save_audio(path, w, sample_rate)
        scp[k] = str(path)
    write_kaldi_file(out_dir / "wav.scp", scp)


def decode_scp(
    codec: AbsCodec, codes_scp: Path, out_dir: Path, num_codebooks: Optional[int] = None, device: str = "cpu"
) -> int:
    """Decode every entry of ``codes_scp`` (first ``num_codebooks`` codebooks) to wav files."""
    codes = read_codes(codes_scp)
    out: Dict[str, np.ndarray] = {}
    for k, c in tqdm(codes.items(), desc=f"decode {codes_scp}"):
        x = torch.from_numpy(c.T.astype(np.int64))[None]  # [1, K, T]
        if num_codebooks is not None:
            x = x[:, :num_codebooks]
        try:
            wav = codec.decode(x.to(device))  # [1, 1, L]
        except CodecInputError as e:
            raise CodecDataError(f"{codes_scp}: utterance '{k}': {e}") from None
        out[k] = wav[0].cpu().numpy()
    _write_wavs(Path(out_dir), out, codec.sample_rate)
    return len(out)


def resynth_scp(
    codec: AbsCodec, wav_scp: Path, out_dir: Path, resample_ok: bool = False,
    num_codebooks: Optional[int] = None, device: str = "cpu",
) -> int:
    """Encode + decode every entry of ``wav_scp``; outputs keep the input length."""
    entries = read_kaldi_file(wav_scp)
    out: Dict[str, np.ndarray] = {}
    for k, p in tqdm(entries.items(), desc=f"resynth {wav_scp}"):
        wav = load_for_codec(k, p, codec, resample_ok)  # [1, L]
        x = torch.from_numpy(wav)[None].to(device)  # [1, 1, L]
        codes = codec.encode(x)
        if num_codebooks is not None:
            codes = codes[:, :num_codebooks]
        y = codec.decode(codes)[0, :, : wav.shape[1]]  # [1, L]
        out[k] = y.cpu().numpy()
    _write_wavs(Path(out_dir), out, codec.sample_rate)
    return len(out)
