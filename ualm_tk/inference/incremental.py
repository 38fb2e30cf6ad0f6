"""The incremental decoding loop: prefill once, then one position per step from the KV cache.

The caller (the UALM model) supplies the prompt as embeddings and two functions:

* ``embed_fn(tokens [N, 1, K]) -> embeds [N, 1, D]`` (sum of the K stream embeddings),
* ``logits_fn(hidden [N, 1, D]) -> logits [N, K, V]`` (hidden + stream embedding, shared head),

so this module works against plain tensors and any :class:`~ualm_tk.lm.AbsDecoder`.

Each step: logits -> CFG combination (if ``guidance_scale``) -> vocabulary mask (stream k only in
its own block + allowed specials) -> greedy / top-k draw -> delay rules -> feed back.

Delay rules, for ``delays[k]`` (``0..K-1`` for the delay pattern, all 0 for text): stream k emits
``<pad>`` at steps ``t < delays[k]`` (not started yet) and at steps ``t >= e + delays[k]`` where
``e`` is the step at which stream 0 emitted a stop id (``<eos>``/``<eot>``); the row then runs
``max(delays) - 1`` tail steps so every stream finishes its last frame (``K - 1`` steps after
stream 0's last frame). A row's output length is ``e + max(1, max(delays))``, its frames ``T = e``.
If a row has not stopped by step ``max_steps - max(1, max(delays))`` its stop id is forced there
(``finished = False``), so every output is well formed and fits in ``max_steps`` rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ualm_tk.inference.cfg import (
    cfg_combine, cfg_prompt_batch, check_guidance_scale, keep_conditional_stop, plausibility_mask)
from ualm_tk.inference.sampling import SamplingConfig, sample_tokens, vocab_bias
from ualm_tk.lm.abs_decoder import AbsDecoder

logger = logging.getLogger(__name__)

EmbedFn = Callable[[torch.Tensor], torch.Tensor]  # tokens [N, 1, K] -> embeds [N, 1, D]
LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # hidden [N, 1, D] -> logits [N, K, V]


class GenerationError(ValueError):
    """Invalid prompt or generation settings."""


@dataclass
class DecodeConfig:
    """What one generation call may emit and when it stops.

    ``allowed [K, V]`` bool (from :func:`~ualm_tk.inference.sampling.stream_vocab_mask`);
    ``stop_ids`` are checked in stream 0; ``delays`` has one entry per stream, ``delays[0] == 0``.
    ``guidance_scale`` None = no CFG (the caller then gives no unconditional prompt).
    ``cfg_plausibility`` α: with CFG at λ ≠ 1, only tokens with conditional probability >= α x
    the conditional maximum may be sampled (:func:`~ualm_tk.inference.cfg.plausibility_mask`).
    ``cfg_conditional_stop``: with CFG at λ ≠ 1, the stop ids of stream 0 keep their conditional
    probability and guidance re-ranks only the other tokens
    (:func:`~ualm_tk.inference.cfg.keep_conditional_stop`).
    """

    allowed: torch.Tensor
    pad_id: int
    stop_ids: Sequence[int]
    delays: Sequence[int]
    max_steps: int
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    guidance_scale: Optional[float] = None
    num_samples: int = 1
    cfg_plausibility: float = 0.0
    cfg_conditional_stop: bool = True

    def __post_init__(self) -> None:
        if self.allowed.dim() != 2 or self.allowed.dtype != torch.bool:
            raise GenerationError(f"allowed must be a bool [K, V] tensor, got {self.allowed.dtype} {tuple(self.allowed.shape)}")
        K, V = self.allowed.shape
        if len(self.delays) != K:
            raise GenerationError(f"delays has {len(self.delays)} entries for {K} streams")
        if self.delays[0] != 0 or any(d < 0 for d in self.delays):
            raise GenerationError(f"delays must be >= 0 with delays[0] == 0, got {list(self.delays)}")
        if not self.stop_ids:
            raise GenerationError("stop_ids is empty: generation could never stop")
        for sid in list(self.stop_ids) + [self.pad_id]:
            if not 0 <= sid < V:
                raise GenerationError(f"token id {sid} is outside the vocabulary [0, {V})")
        if not any(bool(self.allowed[0, s]) for s in self.stop_ids):
            raise GenerationError(f"stream 0 may emit none of the stop ids {list(self.stop_ids)}")
        if self.max_steps < self.tail_rows:
            raise GenerationError(f"max_steps {self.max_steps} < {self.tail_rows} rows needed to close the delay pattern")
        if self.num_samples < 1:
            raise GenerationError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.guidance_scale is not None:
            self.guidance_scale = check_guidance_scale(self.guidance_scale)
        if not 0.0 <= self.cfg_plausibility < 1.0:
            raise GenerationError(f"cfg_plausibility must be in [0, 1), got {self.cfg_plausibility}")

    @property
    def tail_rows(self) -> int:
        """Rows from the stop step to the end of the output, stop row included."""
        return max(1, max(self.delays))


@dataclass
class GenerationOutput:
    """``tokens [N, max_steps_run, K]`` (pad after each row's length), ``lengths [N]``,
    ``end_steps [N]`` (stop row index = number of stream-0 frames), ``finished [N]`` (a stop id
    was sampled rather than forced). ``N`` = prompts x ``num_samples`` (prompt-major)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    end_steps: torch.Tensor
    finished: torch.Tensor


def _check_prompt(embeds: torch.Tensor, mask: Optional[torch.Tensor], what: str, width: int) -> None:
    if embeds.dim() != 3:
        raise GenerationError(f"{what} must be [B, S, D], got shape {tuple(embeds.shape)}")
    if embeds.shape[1] == 0:
        raise GenerationError(f"{what} is empty (S = 0): give at least one prompt position")
    if embeds.shape[2] != width:
        raise GenerationError(f"{what} width {embeds.shape[2]} != decoder hidden_size {width}")
    if mask is not None:
        if tuple(mask.shape) != tuple(embeds.shape[:2]):
            raise GenerationError(f"{what} mask must be {tuple(embeds.shape[:2])}, got {tuple(mask.shape)}")
        if not bool(mask[:, -1].bool().all()):
            raise GenerationError(f"{what} mask must be LEFT-padded: the last position of every row must be real")


@torch.no_grad()
def generate(
    decoder: AbsDecoder,
    prompt_embeds: torch.Tensor,  # [B, S, D]
    embed_fn: EmbedFn,
    logits_fn: LogitsFn,
    config: DecodeConfig,
    prompt_mask: Optional[torch.Tensor] = None,  # [B, S], left padding
    uncond_prompt_embeds: Optional[torch.Tensor] = None,  # [B, S_u, D]
    uncond_prompt_mask: Optional[torch.Tensor] = None,  # [B, S_u]
    generator: Optional[torch.Generator] = None,
    progress: bool = False,
) -> GenerationOutput:
    """Generate up to ``config.max_steps`` positions per row (see module doc)."""
    D = decoder.hidden_size
    _check_prompt(prompt_embeds, prompt_mask, "prompt_embeds", D)
    use_cfg = config.guidance_scale is not None
    if use_cfg and uncond_prompt_embeds is None:
        raise GenerationError("guidance_scale is set but no unconditional prompt (uncond_prompt_embeds) was given")
    if not use_cfg and uncond_prompt_embeds is not None:
        raise GenerationError("an unconditional prompt was given but guidance_scale is None")
    if use_cfg:
        _check_prompt(uncond_prompt_embeds, uncond_prompt_mask, "uncond_prompt_embeds", D)
        if uncond_prompt_embeds.shape[0] != prompt_embeds.shape[0]:
            raise GenerationError(
                f"{prompt_embeds.shape[0]} conditional prompts but {uncond_prompt_embeds.shape[0]} unconditional ones"
            )

    n = config.num_samples
    K, V = config.allowed.shape
    device = prompt_embeds.device

    # ---- rows: prompt-major n-best, then the unconditional half
    def rows(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return x if x is None or n == 1 else x.repeat_interleave(n, dim=0)

    embeds, mask = rows(prompt_embeds), rows(prompt_mask)
    if use_cfg:
        embeds, mask = cfg_prompt_batch(embeds, rows(uncond_prompt_embeds), mask, rows(uncond_prompt_mask))
    R = prompt_embeds.shape[0] * n  # output rows
    N = embeds.shape[0]  # decoder rows (2R with CFG)
    S = embeds.shape[1]
    max_len = S + config.max_steps
    limit = decoder.max_positions
    if limit is not None and max_len > limit:
        raise GenerationError(
            f"prompt of {S} positions + max_steps {config.max_steps} = {max_len} exceeds the decoder's "
            f"maximum of {limit} positions (shorten the prompt or lower max_steps)"
        )

    bias = vocab_bias(config.allowed.to(device), torch.float32)  # [K, V]
    delays = torch.tensor(list(config.delays), dtype=torch.long, device=device)  # [K]
    max_delay = max(config.delays)
    not_started = [delays > t for t in range(max_delay)]  # [K] bool per early step
    stop_ids = torch.tensor(list(config.stop_ids), dtype=torch.long, device=device)
    tail = config.tail_rows
    last_end = config.max_steps - tail  # latest allowed stop step
    end_steps = torch.full((R,), config.max_steps + max_delay + 1, dtype=torch.long, device=device)
    open_rows = torch.ones(R, dtype=torch.bool, device=device)  # no stop emitted yet
    finished = torch.zeros(R, dtype=torch.bool, device=device)
    closes_at: Optional[torch.Tensor] = None  # [R, K] step from which stream k pads (after a stop)
    num_open = R
    out = torch.full((R, config.max_steps, K), config.pad_id, dtype=torch.long, device=device)

    # ---- prefill once
    cache = decoder.init_cache(N, max_len, dtype=embeds.dtype, device=device)
    hidden, cache = decoder(embeds, cache=cache, attention_mask=mask)
    h = hidden[:, -1:]  # [N, 1, D]  (left padding: the last position is real)

    steps_run = 0
    iterator = range(config.max_steps)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="decode", unit="step", leave=False)
    for t in iterator:
        logits = logits_fn(h)  # [N, K, V]
        if logits.dim() != 3 or tuple(logits.shape[:2]) != (N, K) or logits.shape[2] != V:
            raise GenerationError(f"logits_fn returned {tuple(logits.shape)}, expected {(N, K, V)}")
        if use_cfg:
            cond = logits[:R]  # [R, K, V]
            logits = cfg_combine(logits, config.guidance_scale)  # [R, K, V]
            if config.cfg_plausibility > 0 and config.guidance_scale != 1.0:
                keep = plausibility_mask(cond.float() + bias, config.cfg_plausibility)
                logits = logits.float().masked_fill(~keep, float("-inf"))
            if config.cfg_conditional_stop and config.guidance_scale != 1.0:
                logits = logits.float().clone()
                logits[:, 0] = keep_conditional_stop(logits[:, 0] + bias[0], cond[:, 0].float() + bias[0], stop_ids)
        logits = logits.float() + bias
        tok = sample_tokens(logits, config.sampling, generator)  # [R, K]

        # delay rules: not started yet / already closed -> pad
        if t < max_delay:
            tok.masked_fill_(not_started[t], config.pad_id)
        if closes_at is not None:
            tok.masked_fill_(closes_at <= t, config.pad_id)
        stopped = open_rows & torch.isin(tok[:, 0], stop_ids)  # [R]
        if t >= last_end:  # force the stop so the delay tail fits in max_steps
            finished |= stopped
            tok[:, 0].masked_fill_(open_rows & ~stopped, config.stop_ids[0])
            stopped = open_rows.clone()
        out[:, t] = tok
        steps_run = t + 1
        if bool(stopped.any()):
            if t < last_end:
                finished |= stopped
            end_steps.masked_fill_(stopped, t)
            open_rows &= ~stopped
            closes_at = end_steps[:, None] + delays[None, :]
            num_open = int(open_rows.sum())
        if num_open == 0 and t >= int(end_steps.max()) + tail - 1:
            break
        step_in = tok[:, None, :]  # [R, 1, K]
        if use_cfg:
            step_in = torch.cat([step_in, step_in], dim=0)  # both halves see the same tokens
        h, cache = decoder(embed_fn(step_in), cache=cache)

    lengths = end_steps + tail
    logger.debug("generated %d rows in %d steps (%d stopped by themselves)", R, steps_run, int(finished.sum()))
    return GenerationOutput(tokens=out[:, :steps_run], lengths=lengths, end_steps=end_steps, finished=finished)
