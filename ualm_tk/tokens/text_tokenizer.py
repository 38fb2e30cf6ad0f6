"""Text tokenisers whose ids form the text block of the global vocabulary.

Both implementations give ``encode(str) -> list[int]`` (text-block-local ids, i.e. the
tokenizer's own ids; :meth:`TokenLayout.text_to_global` adds the block start), ``decode(ids)`` and
``vocab()`` (index = id). Neither adds BOS/EOS: the task templates add ``<bos>``/``<eos>`` from the
special block.

* :class:`SentencePieceTokenizer`: a BPE model trained in stage 4 with :func:`train_bpe` (byte
  fallback, so no text is ever unknown; deterministic: one thread, input order kept).
* :class:`HFTokenizer`: a Hugging Face tokenizer loaded from a LOCAL directory; its ids are the
  backbone's embedding/head rows, so they can be copied into the LM.

A token directory records which one it uses in ``text_tokenizer.json``
(``{"type": "sentencepiece", "path": "bpe.model"}`` or ``{"type": "hf", "path": "hf_tokenizer"}``,
paths relative to the directory, the model files copied inside); :func:`load_text_tokenizer`
rebuilds it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from typeguard import typechecked

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
TOKENIZER_SPEC = "text_tokenizer.json"


class TextTokenizerError(ValueError):
    """Bad tokenizer files or bad text."""


class AbsTextTokenizer(ABC):
    """Interface of a text tokenizer (ids are text-block-local)."""

    @abstractmethod
    def encode(self, text: str) -> List[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def vocab(self) -> List[str]: ...

    @property
    def vocab_size(self) -> int:
        return len(self.vocab())

    @abstractmethod
    def save_to(self, token_dir: PathLike) -> None:
        """Copy the tokenizer's files into ``token_dir`` and write ``text_tokenizer.json``."""

    def encode_field(self, text: str, key: str, what: str = "text") -> List[int]:
        """``encode`` for data building: empty text (or text giving no token) raises naming the key."""
        if text is None or text.strip() == "":
            raise TextTokenizerError(f"key '{key}': empty {what}")
        ids = self.encode(text)
        if not ids:
            raise TextTokenizerError(f"key '{key}': {what} {text!r} gives no token")
        return ids


class SentencePieceTokenizer(AbsTextTokenizer):
    """A sentencepiece model file (``bpe.model``)."""

    @typechecked
    def __init__(self, model_path: Union[str, Path]):
        import sentencepiece as spm

        self.model_path = str(model_path)
        if not os.path.isfile(self.model_path):
            raise TextTokenizerError(f"{self.model_path}: sentencepiece model not found")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(self.model_path)
        except Exception as e:  # sentencepiece raises OSError/RuntimeError with a terse message
            raise TextTokenizerError(f"{self.model_path}: cannot load sentencepiece model: {e}") from None
        self._vocab = [self.sp.IdToPiece(i) for i in range(self.sp.GetPieceSize())]

    def encode(self, text: str) -> List[int]:
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.DecodeIds([int(i) for i in ids])

    def vocab(self) -> List[str]:
        return list(self._vocab)

    def save_to(self, token_dir: PathLike) -> None:
        d = Path(token_dir)
        d.mkdir(parents=True, exist_ok=True)
        if os.path.abspath(self.model_path) != os.path.abspath(d / "bpe.model"):
            shutil.copyfile(self.model_path, d / "bpe.model")
        _write_spec(d, {"type": "sentencepiece", "path": "bpe.model"})


class HFTokenizer(AbsTextTokenizer):
    """``transformers.AutoTokenizer.from_pretrained(local_dir)``; never downloads.

    ``vocab()`` lists ``len(tokenizer)`` tokens (added tokens included); ids with no token are
    named ``<hf_unused_{i}>``. ``pad_to`` extends the block to a backbone's embedding size (Qwen2.5
    has more embedding rows than tokens) with ``<hf_unused_{i}>`` names.
    """

    @typechecked
    def __init__(self, model_dir: Union[str, Path], pad_to: Optional[int] = None):
        from transformers import AutoTokenizer

        self.model_dir = str(model_dir)
        if not os.path.isdir(self.model_dir):
            raise TextTokenizerError(f"{self.model_dir}: Hugging Face tokenizer directory not found")
        try:
            self.tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        except Exception as e:
            raise TextTokenizerError(f"{self.model_dir}: cannot load a tokenizer: {e}") from None
        n = len(self.tok)
        names = self.tok.convert_ids_to_tokens(list(range(n)))
        self._vocab = [t if t is not None else f"<hf_unused_{i}>" for i, t in enumerate(names)]
        if pad_to is not None:
            if pad_to < n:
                raise TextTokenizerError(f"{self.model_dir}: pad_to={pad_to} is smaller than the {n} tokens")
            self._vocab += [f"<hf_unused_{i}>" for i in range(n, pad_to)]
        self.pad_to = pad_to

    def encode(self, text: str) -> List[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        n = len(self.tok)
        return self.tok.decode([int(i) for i in ids if int(i) < n], skip_special_tokens=False)

    def vocab(self) -> List[str]:
        return list(self._vocab)

    def save_to(self, token_dir: PathLike) -> None:
        d = Path(token_dir)
        self.tok.save_pretrained(str(d / "hf_tokenizer"))
        _write_spec(d, {"type": "hf", "path": "hf_tokenizer", "pad_to": self.pad_to})


def _write_spec(token_dir: Path, spec: dict) -> None:
    tmp = token_dir / f".{TOKENIZER_SPEC}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, token_dir / TOKENIZER_SPEC)


def load_text_tokenizer(token_dir: PathLike) -> AbsTextTokenizer:
    """Rebuild the tokenizer recorded in ``token_dir/text_tokenizer.json``."""
    d = Path(token_dir)
    spec_path = d / TOKENIZER_SPEC
    if not spec_path.is_file():
        raise TextTokenizerError(f"{spec_path}: missing (make it with python -m ualm_tk.bin.make_token_list)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TextTokenizerError(f"{spec_path}: not valid JSON: {e}") from None
    kind = spec.get("type")
    if kind == "sentencepiece":
        return SentencePieceTokenizer(d / spec["path"])
    if kind == "hf":
        return HFTokenizer(d / spec["path"], pad_to=spec.get("pad_to"))
    raise TextTokenizerError(f"{spec_path}: unknown tokenizer type {kind!r} (known: sentencepiece, hf)")


def read_training_text(paths: Iterable[PathLike], kaldi: bool = True) -> List[str]:
    """Lines for BPE training: the values of Kaldi files (``kaldi=True``) or plain lines, in order."""
    from ualm_tk.data.kaldi_files import read_kaldi_file

    out: List[str] = []
    for p in paths:
        if not os.path.isfile(p):
            raise TextTokenizerError(f"{p}: input file not found")
        if kaldi:
            out.extend(read_kaldi_file(p).values())
        else:
            with open(p, encoding="utf-8") as f:
                out.extend(line.rstrip("\n") for line in f if line.strip())
    return out


@typechecked
def train_bpe(
    sentences: Sequence[str],
    vocab_size: int,
    out_dir: Union[str, Path],
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    split_digits: bool = True,
) -> Path:
    """Train ``out_dir/bpe.model`` (+ ``bpe.vocab``) with byte fallback; returns the model path.

    Deterministic: the same sentences in the same order give the same model file (one thread, no
    sampling or shuffling of the input). The piece ``<unk>`` is renamed ``<sp_unk>`` so it never
    shadows the special ``<unk>``; sentencepiece's own BOS/EOS/PAD are disabled (the special block
    has them).
    """
    import sentencepiece as spm

    if not sentences:
        raise TextTokenizerError("no training text")
    import io

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    try:
        # model_writer: the model never records an output path, so the bytes depend on the input only
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(sentences),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=True,
            split_digits=split_digits,
            unk_id=0,
            unk_piece="<sp_unk>",
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=16384,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise TextTokenizerError(f"sentencepiece training failed (vocab_size={vocab_size}): {e}") from None
    model = buf.getvalue()
    proc = spm.SentencePieceProcessor()
    proc.LoadFromSerializedProto(model)
    vocab = "".join(f"{proc.IdToPiece(i)}\t{proc.GetScore(i):g}\n" for i in range(proc.GetPieceSize()))
    for name, data in (("bpe.model", model), ("bpe.vocab", vocab.encode("utf-8"))):
        tmp = out / f".{name}.tmp{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, out / name)
    logger.info("trained %s: %d pieces from %d sentences", out / "bpe.model", vocab_size, len(sentences))
    return out / "bpe.model"
