"""A tiny real corpus for LM tests: wavs, kaldiio codes, a BPE token dir and one data.json per task."""
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf

from ualm_tk.data.kaldi_files import write_kaldi_file
from ualm_tk.data.task_data import build_task_data
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens.layout import TokenLayout
from ualm_tk.tokens.text_tokenizer import SentencePieceTokenizer, train_bpe

K, N, SR = 4, 16, 16000
WORDS = ["dog", "bell", "piano", "rain", "bird", "car"]


def build_corpus(root: Path, num_clips: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = root / "data" / "train"
    (d / "wavs").mkdir(parents=True)
    wav, nsamp, text, codes = {}, {}, {}, {}
    q, a, q2u, tq, ta = {}, {}, {}, {}, {}
    for i in range(num_clips):
        utt = f"utt{i:03d}"
        n = SR // 4 + 800 * (i % 5)
        sf.write(d / "wavs" / f"{utt}.wav", 0.2 * np.sin(2 * np.pi * 220 * (1 + i % 4) * np.arange(n) / SR), SR)
        wav[utt], nsamp[utt] = str(d / "wavs" / f"{utt}.wav"), str(n)
        w = WORDS[i % len(WORDS)]
        text[utt] = f"a {w} sound"
        codes[utt] = rng.integers(0, N, size=(-(-n // 640), K)).astype(np.int16)  # [T,K] at 25 Hz
        q[f"{utt}-q1"], a[f"{utt}-q1"], q2u[f"{utt}-q1"] = "what is it?", w, utt
        tq[f"t{i:03d}"], ta[f"t{i:03d}"] = f"what is {i} plus 1?", str(i + 1)
    for name, tab in (("wav.scp", wav), ("utt2num_samples", nsamp), ("text", text), ("qa/question", q),
                      ("qa/answer", a), ("qa/qa2utt", q2u), ("text_only/question", tq), ("text_only/answer", ta)):
        write_kaldi_file(d / name, tab)
    cdir = root / "dump" / "codes"
    cdir.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{cdir / 'codes.ark'},{cdir / 'codes.scp'}", write_function="numpy") as wr:
        for utt in sorted(codes):
            wr(utt, codes[utt])
    sents = list(text.values()) + list(q.values()) + list(a.values()) + list(tq.values()) + list(ta.values())
    tok = SentencePieceTokenizer(train_bpe(sents * 3, 300, root / "bpe"))
    td = root / "token_list"
    tok.save_to(td)
    layout = TokenLayout(tok.vocab(), K, N)
    layout.write(td)
    pat = build_pattern("delay")
    paths = {}
    for task in ("caption_to_audio", "audio_to_caption", "audio_qa", "text_only"):
        data = build_task_data(task, d, layout, tok, pat, codes_scp=cdir / "codes.scp", sample_rate=SR)
        p = root / "dump" / task / "train" / "data.json"
        data.save(p)
        paths[task] = p
    return dict(root=root, token_dir=td, layout=layout, tokenizer=tok, data=paths, data_dir=d)


TINY_LM_CONFIG = "egs2/TEMPLATE/ualm1/conf/train_ualm_tiny.yaml"


def train_tiny_lm(corpus, out_dir: Path, repo_root: Path, *extra: str) -> Path:
    """Stage 5 on ``corpus`` (from :func:`build_corpus`) with the tiny config, one epoch -> the model dir."""
    from ualm_tk.tasks.ualm import main as train

    args = ["--config", str(repo_root / TINY_LM_CONFIG), "--token_dir", str(corpus["token_dir"]),
            "--output_dir", str(out_dir), "--max_epoch", "1", *extra]
    for t, p in corpus["data"].items():
        args += ["--train_data_path_and_name_and_type", f"{p},{t},data_json",
                 "--valid_data_path_and_name_and_type", f"{p},{t},data_json"]
    train(args)
    return Path(out_dir)


def save_tiny_codec(out_dir: Path) -> Path:
    """A random mini_rvq codec with the corpus' K and N, saved as a component dir."""
    import torch

    from ualm_tk.codec import MiniRVQCodec, save_codec

    torch.manual_seed(0)
    codec = MiniRVQCodec(strides=[2, 4, 8, 10], channels=[8, 8, 8, 8], latent_dim=16, num_codebooks=K, codebook_size=N)
    save_codec(codec.eval(), out_dir)
    return Path(out_dir)
