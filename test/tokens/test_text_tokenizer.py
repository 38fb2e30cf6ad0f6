"""Text tokenisers: sentencepiece BPE trained here, and a tiny Hugging Face tokenizer saved here."""
import hashlib
import logging
import subprocess

import pytest

from ualm_tk.tokens.layout import TokenLayout
from ualm_tk.tokens.text_tokenizer import (
    HFTokenizer,
    SentencePieceTokenizer,
    TextTokenizerError,
    load_text_tokenizer,
    train_bpe,
)

CAPTIONS = [
    "a dog barks, then a bell rings",
    "a woman says hello over a quiet pink noise",
    "a piano plays a slow melody",
    "What instrument is playing? piano",
    "What is 17 + 25? 42",
] * 20


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    return train_bpe(CAPTIONS, 300, tmp_path_factory.mktemp("bpe"))


def test_bpe_is_deterministic(bpe_model, tmp_path):
    again = train_bpe(CAPTIONS, 300, tmp_path)
    assert _md5(again) == _md5(bpe_model)


def test_bpe_round_trip_and_byte_fallback(bpe_model):
    tok = SentencePieceTokenizer(bpe_model)
    assert len(tok.vocab()) == 300 and tok.vocab()[0] == "<sp_unk>"
    for text in ["a dog barks, then a bell rings", "zebra ünïcödé 日本語 🙂 {x}", "What is 99 + 1?"]:
        ids = tok.encode(text)
        assert 0 not in ids, "byte fallback: nothing is unknown"
        assert all(0 <= i < 300 for i in ids)
        assert tok.decode(ids) == text
    # trained merges are used: a frequent word is one piece, fewer ids than bytes
    assert len(tok.encode("a dog barks")) < len("a dog barks".encode())


def test_encode_field_rejects_empty_text_naming_key(bpe_model):
    tok = SentencePieceTokenizer(bpe_model)
    with pytest.raises(TextTokenizerError, match="key 'utt7': empty caption"):
        tok.encode_field("   ", "utt7", "caption")


def test_bad_model_files(tmp_path):
    with pytest.raises(TextTokenizerError, match="not found"):
        SentencePieceTokenizer(tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"garbage")
    with pytest.raises(TextTokenizerError, match="cannot load sentencepiece model"):
        SentencePieceTokenizer(tmp_path / "bad.model")
    with pytest.raises(TextTokenizerError, match="vocab_size=5000"):
        train_bpe(CAPTIONS, 5000, tmp_path)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer built and saved here (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    t.train_from_iterator(CAPTIONS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>", pad_token="<pad>")
    d = tmp_path_factory.mktemp("hf")
    fast.save_pretrained(str(d))
    return d


def test_hf_tokenizer_ids_are_the_backbone_ids(hf_dir):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(hf_dir))
    tok = HFTokenizer(hf_dir)
    text = "a dog barks 🙂"
    assert tok.encode(text) == ref(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(tok.encode(text)) == text
    vocab = tok.vocab()
    assert len(vocab) == len(ref)
    assert all(vocab[i] == ref.convert_ids_to_tokens(i) for i in range(len(ref)))
    # its "<pad>" text token cannot shadow the special <pad> in the global list
    layout = TokenLayout(vocab, 2, 4)
    pad_text = ref.convert_tokens_to_ids("<pad>")
    assert layout.token(256 + pad_text) == "<text:<pad>>" and layout.token(0) == "<pad>"


def test_hf_pad_to_and_token_dir_round_trip(hf_dir, tmp_path):
    tok = HFTokenizer(hf_dir, pad_to=410)
    assert len(tok.vocab()) == 410 and tok.vocab()[-1] == "<hf_unused_409>"
    tok.save_to(tmp_path)
    again = load_text_tokenizer(tmp_path)
    assert isinstance(again, HFTokenizer) and again.vocab() == tok.vocab()
    assert again.encode("a piano plays") == tok.encode("a piano plays")
    with pytest.raises(TextTokenizerError, match="smaller than"):
        HFTokenizer(hf_dir, pad_to=3)
    with pytest.raises(TextTokenizerError, match="directory not found"):
        HFTokenizer(tmp_path / "missing")


def test_cli_train_bpe_and_make_token_list(tmp_path, python_exe, subprocess_env, caplog):
    from ualm_tk.bin import make_token_list

    text = tmp_path / "text"
    text.write_text("".join(f"utt{i:03d} {c}\n" for i, c in enumerate(CAPTIONS)), encoding="utf-8")
    r = subprocess.run(
        [python_exe, "-m", "ualm_tk.bin.train_bpe", "--input", str(text), "--vocab_size", "300",
         "--out_dir", str(tmp_path / "bpe")],
        env=subprocess_env, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    td = tmp_path / "token_list"
    args = ["--bpe_model", str(tmp_path / "bpe" / "bpe.model"),
            "--num_codebooks", "4", "--codebook_size", "16", "--out_dir", str(td)]
    assert make_token_list.main(args) == 0
    layout = TokenLayout.load(td)
    assert layout.num_codebooks == 4 and layout.codebook_size == 16 and layout.text_size == 300
    tok = load_text_tokenizer(td)
    assert tok.vocab() == list(layout.text_vocab)
    assert tok.encode(CAPTIONS[0]) == SentencePieceTokenizer(tmp_path / "bpe" / "bpe.model").encode(CAPTIONS[0])
    # re-running is a no-op; a different layout in the same dir is refused
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert make_token_list.main(args) == 0 and "nothing to do" in caplog.text
    args[args.index("--num_codebooks") + 1] = "8"
    assert make_token_list.main(args) == 1 and "already holds a different token layout" in caplog.text
    assert TokenLayout.load(td).num_codebooks == 4
    assert make_token_list.main(args + ["--overwrite", "true"]) == 0
    assert TokenLayout.load(td).num_codebooks == 8


def test_cli_train_bpe_rejects_tiny_vocab(tmp_path, caplog):
    from ualm_tk.bin import train_bpe as cli

    (tmp_path / "text").write_text("u1 hello\n", encoding="utf-8")
    assert cli.main(["--input", str(tmp_path / "text"), "--vocab_size", "100", "--out_dir", str(tmp_path)]) == 1
    assert "too small" in caplog.text
