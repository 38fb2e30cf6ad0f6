"""Token layout (specials | text | K audio streams) and text tokenisers."""

from ualm_tk.tokens.layout import TokenLayout, TokenLayoutError, TokenLayoutMismatch, audio_token_name
from ualm_tk.tokens.specials import NUM_SPECIAL_SLOTS, SPECIAL_IDS, SPECIAL_TOKENS, special_id
from ualm_tk.tokens.text_tokenizer import (
    AbsTextTokenizer,
    HFTokenizer,
    SentencePieceTokenizer,
    TextTokenizerError,
    load_text_tokenizer,
)

__all__ = [
    "TokenLayout",
    "TokenLayoutError",
    "TokenLayoutMismatch",
    "audio_token_name",
    "NUM_SPECIAL_SLOTS",
    "SPECIAL_IDS",
    "SPECIAL_TOKENS",
    "special_id",
    "AbsTextTokenizer",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "TextTokenizerError",
    "load_text_tokenizer",
]
