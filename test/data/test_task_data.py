"""Stage 4 text part: data.json built from a real data dir, real wavs and a kaldiio codes.scp."""
import json
import logging
import subprocess

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from ualm_tk.bin import make_task_data
from ualm_tk.data.kaldi_files import write_kaldi_file
from ualm_tk.data.task_data import TaskData, load_codes
from ualm_tk.data.task_templates import TaskDataError
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens.layout import TokenLayout, TokenLayoutMismatch
from ualm_tk.tokens.text_tokenizer import SentencePieceTokenizer, load_text_tokenizer, train_bpe

K, N, SR = 4, 32, 16000
CAPTIONS = {
    "utt1": "a dog barks, then a bell rings",
    "utt2": "a piano plays a slow melody",
    "utt3": "a woman says hello over quiet pink noise",
}
QA = {
    "utt1-q01": ("utt1", "What animal is heard first?", "dog", "animal"),
    "utt2-q01": ("utt2", "What instrument is playing?", "piano", "instrument"),
}
TEXT_ONLY = {"t0001": ("What is 17 + 25?", "42", "add"), "t0002": ("What is 3 + 4?", "7", "add")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """data dir (wav.scp, text, utt2num_samples, qa/, text_only/), codes.scp, token dir."""
    root = tmp_path_factory.mktemp("corpus")
    d = root / "dump" / "audio" / "train"
    (d / "wavs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    wav, nsamp, codes = {}, {}, {}
    for i, utt in enumerate(CAPTIONS):
        n = SR // 2 + 1000 * i
        t = np.arange(n) / SR
        sf.write(d / "wavs" / f"{utt}.wav", 0.3 * np.sin(2 * np.pi * 440 * (i + 1) * t), SR)
        wav[utt] = str(d / "wavs" / f"{utt}.wav")
        nsamp[utt] = str(n)
        codes[utt] = rng.integers(0, N, size=(-(-n // 320), K)).astype(np.int16)  # [T,K] at 50 Hz
    write_kaldi_file(d / "wav.scp", wav)
    write_kaldi_file(d / "utt2num_samples", nsamp)
    write_kaldi_file(d / "text", CAPTIONS)
    write_kaldi_file(d / "qa" / "question", {k: v[1] for k, v in QA.items()})
    write_kaldi_file(d / "qa" / "answer", {k: v[2] for k, v in QA.items()})
    write_kaldi_file(d / "qa" / "qa2utt", {k: v[0] for k, v in QA.items()})
    write_kaldi_file(d / "qa" / "qtype", {k: v[3] for k, v in QA.items()})
    write_kaldi_file(d / "text_only" / "question", {k: v[0] for k, v in TEXT_ONLY.items()})
    write_kaldi_file(d / "text_only" / "answer", {k: v[1] for k, v in TEXT_ONLY.items()})
    write_kaldi_file(d / "text_only" / "qtype", {k: v[2] for k, v in TEXT_ONLY.items()})
    cdir = root / "dump" / "codes" / "train"
    cdir.mkdir(parents=True)
    # int16 [T,K] arrays in numpy format (Kaldi arks hold no int matrices) ...
    with kaldiio.WriteHelper(f"ark,scp:{cdir / 'codes.ark'},{cdir / 'codes.scp'}", write_function="numpy") as w:
        for utt in sorted(codes):
            w(utt, codes[utt])
    # ... and Kaldi-native float32 [K,T] matrices
    with kaldiio.WriteHelper(f"ark,scp:{cdir / 'codes_kt.ark'},{cdir / 'codes_kt.scp'}") as w:
        for utt in sorted(codes):
            w(utt, np.ascontiguousarray(codes[utt].T.astype(np.float32)))
    texts = list(CAPTIONS.values()) + [q for _, q, a, _ in QA.values()] + [a for _, _, a, _ in QA.values()]
    texts += [q for q, _, _ in TEXT_ONLY.values()] + [a for _, a, _ in TEXT_ONLY.values()]
    model = train_bpe(texts * 5, 320, root / "bpe")
    tok = SentencePieceTokenizer(model)
    td = root / "data" / "token_list"
    tok.save_to(td)
    TokenLayout(tok.vocab(), K, N).write(td)
    return {"root": root, "data_dir": d, "codes_scp": cdir / "codes.scp", "codes_kt": cdir / "codes_kt.scp",
            "token_dir": td, "codes": codes}


def _args(c, task, out, *extra):
    a = ["--task", task, "--data_dir", str(c["data_dir"]), "--token_dir", str(c["token_dir"]), "--out", str(out)]
    if task == "caption_to_audio":
        a += ["--codes_scp", str(c["codes_scp"])]
    return a + list(extra)


def test_cli_caption_to_audio_end_to_end(corpus, tmp_path, python_exe, subprocess_env):
    out = tmp_path / "caption_to_audio" / "train" / "data.json"
    r = subprocess.run([python_exe, "-m", "ualm_tk.bin.make_task_data", *_args(corpus, "caption_to_audio", out)],
                       env=subprocess_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 examples" in r.stderr
    data = TaskData.load(out)
    layout = TokenLayout.load(corpus["token_dir"])
    data.check_layout(layout)
    tok = load_text_tokenizer(corpus["token_dir"])
    assert data.task == "caption_to_audio" and data.keys() == ["utt1", "utt2", "utt3"]
    pat = build_pattern("delay")
    for key in data:
        ex = data.render(key, layout, pat)
        assert ex.length == data.length(key)
        user, asst = ex.segments
        # the caption decodes back to the source text
        cap = layout.global_to_text(ex.tokens[user.content_start:user.content_end, 0])
        assert tok.decode(cap) == CAPTIONS[key] == data.meta(key)["caption"]
        # the assistant audio reverts to exactly the codes stored in the ark
        seq = ex.tokens[asst.content_start:asst.end]  # [S_a,K]
        T = asst.content_end - asst.content_start
        assert seq[T, 0] == 2  # <eos> right after the last stream-0 frame, inside the delayed tail
        audio_only = seq.copy()
        audio_only[T, 0] = 0  # what inference de-interleaves: the <eos> slot is a pattern pad
        codes = pat.revert(torch.from_numpy(audio_only)[None])[0]
        local = layout.global_to_audio(codes, dim=0).numpy()  # [K,T]
        np.testing.assert_array_equal(local, corpus["codes"][key].T)
    # compact: no code arrays inside data.json
    raw = json.loads(out.read_text())
    seg = raw["examples"]["utt1"]["segments"][1]
    assert set(seg) == {"role", "modality", "codes", "num_frames"} and ":" in seg["codes"]


def test_codes_layout_kt_matches_tk(corpus, tmp_path):
    a, b = tmp_path / "tk.json", tmp_path / "kt.json"
    assert make_task_data.main(_args(corpus, "caption_to_audio", a)) == 0
    args = _args(corpus, "caption_to_audio", b)
    args[args.index("--codes_scp") + 1] = str(corpus["codes_kt"])
    assert make_task_data.main(args + ["--codes_layout", "KT"]) == 0
    layout = TokenLayout.load(corpus["token_dir"])
    pat = build_pattern("delay")
    da, db = TaskData.load(a), TaskData.load(b)
    for key in da:
        np.testing.assert_array_equal(da.render(key, layout, pat).tokens, db.render(key, layout, pat).tokens)
    # reading KT arrays as TK is caught: 4 frames x T codebooks != K
    args = _args(corpus, "caption_to_audio", tmp_path / "bad.json")
    args[args.index("--codes_scp") + 1] = str(corpus["codes_kt"])
    with pytest.raises(TaskDataError, match="codebooks"):
        from ualm_tk.data.task_data import build_task_data
        build_task_data("caption_to_audio", corpus["data_dir"], layout, load_text_tokenizer(corpus["token_dir"]),
                        pat, codes_scp=corpus["codes_kt"], codes_layout="TK")


def test_understanding_and_text_tasks(corpus, tmp_path):
    layout = TokenLayout.load(corpus["token_dir"])
    tok = load_text_tokenizer(corpus["token_dir"])
    pat = build_pattern("delay")
    for task in ("audio_to_caption", "audio_qa", "text_only"):
        out = tmp_path / task / "data.json"
        assert make_task_data.main(_args(corpus, task, out, "--fs", str(SR))) == 0, task
        data = TaskData.load(out)
        src = {"audio_to_caption": CAPTIONS, "audio_qa": QA, "text_only": TEXT_ONLY}[task]
        assert data.keys() == sorted(src)
        for key in data:
            ex = data.render(key, layout, pat)
            asst = ex.segments[-1]
            answer = tok.decode(layout.global_to_text(ex.tokens[asst.content_start:asst.content_end, 0]))
            expect = {"audio_to_caption": lambda: CAPTIONS[key], "audio_qa": lambda: QA[key][2],
                      "text_only": lambda: TEXT_ONLY[key][1]}[task]()
            assert answer == expect
            if task != "text_only":
                utt = key.split("-")[0]
                (feat,) = ex.audio_feats
                n = int(corpus["data_dir"].joinpath("utt2num_samples").read_text().split()[
                    2 * sorted(CAPTIONS).index(utt) + 1])
                assert feat.end - feat.start == -(-n * 25 // SR)
                assert feat.wav.endswith(f"{utt}.wav") and feat.sample_rate == SR
        if task == "audio_qa":
            assert data.meta("utt2-q01") == {"utt": "utt2", "qtype": "instrument",
                                             "question": "What instrument is playing?", "answer": "piano"}


def test_bad_inputs_give_clear_errors(corpus, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    out = tmp_path / "x.json"

    def fails(args, pattern):
        caplog.clear()
        assert make_task_data.main(args) == 1
        assert pattern in caplog.text, caplog.text

    fails(_args(corpus, "dance", out), "unknown task 'dance'; known tasks: audio_qa")
    fails(_args(corpus, "audio_qa", out, "--fs", "8000"), "utt1.wav is 16000 Hz, expected 8000 Hz")
    fails(_args(corpus, "caption_to_audio", out, "--max_len", "20"), "key 'utt1': task caption_to_audio example has")
    fails(_args(corpus, "caption_to_audio", out, "--max_text_len", "3"), "key 'utt1': caption has")
    args = _args(corpus, "caption_to_audio", out)
    del args[args.index("--codes_scp"):args.index("--codes_scp") + 2]
    fails(args, "needs the codec codes")
    # empty caption, missing codes entry: copies of the data dir
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(corpus["data_dir"], bad)
    (bad / "text").write_text("utt1 a dog\nutt2   \nutt3 x\n")
    args = _args(corpus, "audio_to_caption", out)
    args[args.index("--data_dir") + 1] = str(bad)
    fails(args, "text:2 (key 'utt2'): empty value")
    (bad / "text").write_text("utt1 a dog\nutt2 a cat\nutt4 x\n")
    args[args.index("--task") + 1] = "caption_to_audio"
    fails(args + ["--codes_scp", str(corpus["codes_scp"])], "codes.scp: no entry for key 'utt4'")
    assert not out.exists()


def test_data_json_checks(corpus, tmp_path):
    out = tmp_path / "d.json"
    assert make_task_data.main(_args(corpus, "text_only", out)) == 0
    data = TaskData.load(out)
    other = TokenLayout(load_text_tokenizer(corpus["token_dir"]).vocab(), K + 1, N)
    with pytest.raises(TokenLayoutMismatch, match="d.json was built with another token list"):
        data.check_layout(other)
    text = out.read_text()
    out.write_text(text.replace('"num_examples": 2', '"num_examples": 3'))
    with pytest.raises(TaskDataError, match="num_examples is 3 but 2 examples are listed"):
        TaskData.load(out)
    out.write_text(text[: len(text) // 2])
    with pytest.raises(TaskDataError, match="not valid JSON"):
        TaskData.load(out)
    out.write_text(text.replace('"role":"assistant"', '"role":"robot"', 1))
    with pytest.raises(TaskDataError, match="d.json: key 't0001' segment 1: unknown role 'robot'"):
        TaskData.load(out)
    out.write_text(text.replace('"task": "text_only"', '"task": "dance"'))
    with pytest.raises(TaskDataError, match="unknown task 'dance'"):
        TaskData.load(out)


def test_load_codes_checks(corpus):
    ref = open(corpus["codes_scp"]).read().split()[1]
    assert load_codes(ref, "TK").shape == (K, corpus["codes"]["utt1"].shape[0])
    with pytest.raises(TaskDataError, match="cannot read codes"):
        load_codes(str(corpus["root"] / "nope.ark:0"))


def test_audio_qa_dialog_puts_every_question_of_a_clip_in_one_example(corpus, tmp_path):
    import shutil

    d = tmp_path / "train"
    shutil.copytree(corpus["data_dir"], d)
    qa = {f"utt1-q{i:02d}": ("utt1", f"Question number {w}?", w, "count") for i, w in enumerate(["one", "two", "three"])}
    qa["utt3-q00"] = ("utt3", "Is there speech?", "yes", "speech")
    for name, col in (("question", 1), ("answer", 2), ("qa2utt", 0), ("qtype", 3)):
        write_kaldi_file(d / "qa" / name, {k: v[col] for k, v in qa.items()})
    c = dict(corpus, data_dir=d)
    out = tmp_path / "dialog.json"
    assert make_task_data.main(_args(c, "audio_qa_dialog", out, "--fs", str(SR))) == 0
    single = tmp_path / "single.json"
    assert make_task_data.main(_args(c, "audio_qa", single, "--fs", str(SR))) == 0
    data, one = TaskData.load(out), TaskData.load(single)
    assert data.keys() == ["utt1", "utt3"]  # one example per clip with questions (utt2 has none)
    layout, tok, pat = TokenLayout.load(corpus["token_dir"]), load_text_tokenizer(corpus["token_dir"]), build_pattern("delay")
    ex = data.render("utt1", layout, pat)
    texts = [tok.decode(layout.global_to_text(ex.tokens[s.content_start:s.content_end, 0])) for s in ex.segments[1:]]
    turns = list(zip(texts[0::2], texts[1::2]))
    assert sorted(turns) == sorted((q, a) for _, q, a, _ in [v for k, v in qa.items() if v[0] == "utt1"])
    assert [s.role for s in ex.segments] == ["user"] + ["user", "assistant"] * 3
    assert len(ex.audio_feats) == 1  # the clip is encoded once for all three questions
    # the loss is on the three answers only
    ans = [s for s in ex.segments if s.role == "assistant"]
    on = np.flatnonzero(ex.loss_mask[:, 0] > 0)
    expect = np.concatenate([np.arange(s.content_start, s.content_end + 1) for s in ans])
    assert set(on) <= set(expect) and len(on) >= sum(s.content_end - s.content_start for s in ans)
    # the first turn is exactly the audio_qa example of that question (same prompt and answer tokens)
    first_q = turns[0][0]
    qkey = next(k for k, v in qa.items() if v[1] == first_q)
    ref = one.render(qkey, layout, pat)
    n = ref.tokens.shape[0]
    assert np.array_equal(ex.tokens[:n - 1], ref.tokens[:n - 1])
    # the order is fixed per clip (rebuilding gives the same file)
    again = tmp_path / "again.json"
    assert make_task_data.main(_args(c, "audio_qa_dialog", again, "--fs", str(SR))) == 0
    assert json.loads(again.read_text())["examples"] == json.loads(out.read_text())["examples"]


def test_text_only_solution_becomes_an_eot_segment_before_the_answer(corpus, tmp_path, caplog):
    import shutil

    from ualm_tk.data.task_data import _source_rows
    from ualm_tk.tokens import specials as sp

    d = tmp_path / "train"
    shutil.copytree(corpus["data_dir"], d)
    solutions = {"t0001": "17 + 25 = 42", "t0002": "3 + 4 = 7"}
    write_kaldi_file(d / "text_only" / "solution", solutions)
    rows = _source_rows("text_only", d)
    assert [(r["key"], r["solution"], r["answer"]) for r in rows] == [("t0001", "17 + 25 = 42", "42"), ("t0002", "3 + 4 = 7", "7")]
    out = tmp_path / "sol.json"
    assert make_task_data.main(_args(dict(corpus, data_dir=d), "text_only", out)) == 0
    layout, tok, pat = TokenLayout.load(corpus["token_dir"]), load_text_tokenizer(corpus["token_dir"]), build_pattern("delay")
    data = TaskData.load(out)
    for key in data:
        ex = data.render(key, layout, pat)
        assert [s.role for s in ex.segments] == ["user", "assistant", "assistant"]
        sol, ans = ex.segments[1:]
        decode = lambda s: tok.decode(layout.global_to_text(ex.tokens[s.content_start:s.content_end, 0]))  # noqa: E731
        assert decode(sol) == solutions[key] and decode(ans) == TEXT_ONLY[key][1]
        assert ex.tokens[sol.content_end, 0] == sp.EOT and ex.tokens[ans.content_end, 0] == sp.EOS
        assert ex.length == data.length(key)
    # without the file: one answer segment, as before
    plain = tmp_path / "plain.json"
    assert make_task_data.main(_args(corpus, "text_only", plain)) == 0
    assert all(len(TaskData.load(plain).segments(k)) == 2 for k in TEXT_ONLY)
    # a key of question without a solution: the error names the file and the key
    write_kaldi_file(d / "text_only" / "solution", {"t0001": "17 + 25 = 42"})
    with pytest.raises(TaskDataError, match=r"text_only/solution: no entry for key 't0002'"):
        _source_rows("text_only", d)
    caplog.set_level(logging.ERROR)
    assert make_task_data.main(_args(dict(corpus, data_dir=d), "text_only", tmp_path / "bad.json")) == 1
    assert "text_only/solution: no entry for key 't0002'" in caplog.text
