"""Teacher-forced cross-entropy of a UALM on the audio tokens of data.json examples.

Examples are rendered as in training but WITHOUT CFG dropout; the loss is read per stream on the
assistant audio positions only (a position of stream k counts when its target is a code of
stream k's block; the closing ``<eos>`` and pattern pads do not), in nats/token. Stream 0 is
scored over its full output range (specials, text and codebook 0), as the model predicts it, and
also (``stream0_decode_vocab``) over what audio decoding lets it emit: codebook 0 and ``<eos>``.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

from ualm_tk.data.lm_dataset import collate, load_wav
from ualm_tk.data.task_data import TaskData
from ualm_tk.models.ualm import UALMModel
from ualm_tk.tokens import specials as sp

logger = logging.getLogger(__name__)


@torch.no_grad()
def audio_token_nll(model: UALMModel, data: TaskData, keys: Sequence[str], batch_size: int = 8) -> Dict[str, object]:
    """``{"per_stream": [K floats], "mean", "stream0_decode_vocab", "mean_decode_vocab", "num_frames", "num_examples"}``."""
    from tqdm import tqdm

    lay, pattern = model.layout, model.pattern
    K = lay.num_codebooks
    sr = model.audio_encoder.sample_rate if model.audio_encoder is not None else 16000
    device = next(model.parameters()).device
    blocks = torch.tensor([lay.stream_vocab_range(k) for k in range(K)], device=device)  # [K,2]
    tot = torch.zeros(K, dtype=torch.float64)
    cnt = torch.zeros(K, dtype=torch.long)
    tot0_dec = 0.0
    a0, b0 = lay.stream_vocab_range(0)
    frames = 0
    model.eval()
    for i in tqdm(range(0, len(keys), batch_size), desc="heldout loss", unit="batch", mininterval=10,
                  disable=len(keys) < 10 * batch_size):
        items: List[dict] = []
        for key in keys[i : i + batch_size]:
            ex = data.render(key, lay, pattern)
            frames += sum(s.num_frames for s in data.segments(key) if s.role == "assistant" and s.modality == "audio")
            audio = [load_wav(f.wav, sr, key, f.num_samples) for f in ex.audio_feats]
            items.append(dict(key=key, task=data.task, tokens=ex.tokens, loss_mask=ex.loss_mask, audio=audio))
        _, b = collate(items)
        b = {k: v.to(device) for k, v in b.items()}
        tokens = b["tokens"]  # [B,S,K]
        S = tokens.shape[1]
        attn = torch.arange(S, device=device)[None, :] < b["lengths"][:, None]  # [B,S]
        x = model.input_embeds(tokens, b.get("audio"), b.get("audio_lengths"), b.get("audio_rows"))
        hidden, _ = model.decoder(x[:, :-1], attention_mask=attn[:, :-1])
        target = tokens[:, 1:]  # [B,S-1,K]
        mask = b["loss_mask"][:, 1:]
        ce, _ = model._stream_ce(hidden, target, mask)  # [B,S-1,K]
        on = (mask > 0) & (target >= blocks[:, 0]) & (target < blocks[:, 1])  # audio code targets
        tot += (ce.double() * on).sum(dim=(0, 1)).cpu()
        logits0, _ = model.stream_logits(hidden)  # [B,S-1,s0_end]
        sub = torch.cat([logits0[..., a0:b0], logits0[..., sp.EOS : sp.EOS + 1]], dim=-1).float()  # codebook 0 + <eos>
        t0 = (target[..., 0] - a0).clamp(0, b0 - a0 - 1)
        ce0 = F.cross_entropy(sub.transpose(1, 2), t0, reduction="none")  # [B,S-1]
        tot0_dec += float((ce0.double() * on[..., 0]).sum())
        cnt += on.sum(dim=(0, 1)).cpu()
    if int(cnt.min()) == 0:
        raise ValueError(f"{data.path}: no assistant audio positions in the {len(keys)} examples (task {data.task})")
    if any(int(c) != frames for c in cnt):
        raise RuntimeError(f"audio positions per stream {cnt.tolist()} differ from the {frames} frames of the examples")
    per = (tot / cnt).tolist()
    s0 = tot0_dec / int(cnt[0])
    return {"per_stream": per, "mean": float(sum(per) / K), "stream0_decode_vocab": s0,
            "mean_decode_vocab": float((s0 + sum(per[1:])) / K), "num_frames": frames, "num_examples": len(keys)}
