"""Fast incremental inference: sampling with stream masks, CFG in one batch, the decode loop."""

from ualm_tk.inference.cfg import (
    GuidanceError, cfg_combine, cfg_prompt_batch, check_guidance_scale, unconditional_tokens,
)
from ualm_tk.inference.incremental import DecodeConfig, GenerationError, GenerationOutput, generate
from ualm_tk.inference.sampling import (
    SamplingConfig, SamplingError, sample_tokens, stream_vocab_mask, vocab_bias,
)

__all__ = [
    "GuidanceError", "cfg_combine", "cfg_prompt_batch", "check_guidance_scale", "unconditional_tokens",
    "DecodeConfig", "GenerationError", "GenerationOutput", "generate",
    "SamplingConfig", "SamplingError", "sample_tokens", "stream_vocab_mask", "vocab_bias",
]
