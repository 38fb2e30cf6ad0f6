"""python -m ualm_tk.bin.generate on a tiny trained model dir: codes (delay reverted) -> wav, and text answers."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "models"))
from lm_corpus import K, N, build_corpus, save_tiny_codec, train_tiny_lm  # noqa: E402

from ualm_tk.bin.generate import main  # noqa: E402
from ualm_tk.data.task_templates import make_prompt_segments  # noqa: E402
from ualm_tk.models.generation import generate_from_segments, load_model_dir  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp("gen")
    c = build_corpus(root)
    return dict(exp=train_tiny_lm(c, root / "exp", repo_root), codec=save_tiny_codec(root / "codec"), corpus=c)


def test_caption_to_audio_writes_codes_and_wav(model_dir, tmp_path):
    out = tmp_path / "out"
    main(["--model_dir", str(model_dir["exp"]), "--text", "a dog sound", "--codec_dir", str(model_dir["codec"]),
          "--output_dir", str(out), "--max_steps", "24", "--num_samples", "4", "--seed", "1"])
    codes = [np.load(out / ("codes.npy" if i == 0 else f"codes_{i}.npy")) for i in range(4)]
    for c in codes:
        assert c.shape[0] == K and c.shape[1] <= 24 - (K - 1) and c.dtype == np.int64
        assert c.size == 0 or (c.min() >= 0 and c.max() < N)
    with_frames = [i for i, c in enumerate(codes) if c.shape[1] > 0]
    assert with_frames, "no sample produced any frame"
    i = with_frames[0]
    wav, sr = sf.read(out / ("gen.wav" if i == 0 else f"gen_{i}.wav"))
    assert sr == 16000 and len(wav) == codes[i].shape[1] * 640
    # same seed, same samples
    out2 = tmp_path / "out2"
    main(["--model_dir", str(model_dir["exp"]), "--text", "a dog sound", "--output_dir", str(out2),
          "--max_steps", "24", "--num_samples", "4", "--seed", "1"])
    np.testing.assert_array_equal(np.load(out2 / "codes.npy"), codes[0])


def test_generated_tokens_follow_the_delay_pattern(model_dir):
    model, lay, tok = load_model_dir(model_dir["exp"])
    enc = lambda t, w: lay.text_to_global(tok.encode_field(t, "prompt", w))  # noqa: E731
    segs = make_prompt_segments("caption_to_audio", {"text": "a bell sound"}, enc)
    # no CFG and CFG λ=1 give the same draws (λ=1 returns the conditional logits)
    a = generate_from_segments(model, segs, guidance_scale=None, max_steps=16, seed=3, num_samples=3)
    b = generate_from_segments(model, segs, guidance_scale=1.0, max_steps=16, seed=3, num_samples=3)
    for x, y in zip(a, b):
        assert torch.equal(x.codes, y.codes)
        assert x.codes.shape[0] == K and x.codes.shape[1] <= 16 - (K - 1)


def test_audio_question_gives_text(model_dir, tmp_path, python_exe, subprocess_env):
    wav = sorted((model_dir["corpus"]["data_dir"] / "wavs").glob("*.wav"))[0]
    out = tmp_path / "qa"
    r = subprocess.run([python_exe, "-m", "ualm_tk.bin.generate", "--model_dir", str(model_dir["exp"]), "--audio", str(wav),
                        "--text", "what is it?", "--output_dir", str(out), "--max_steps", "8"],
                       env={**subprocess_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (out / "text").read_text().rstrip("\n")
    assert r.stdout.rstrip("\n").splitlines()[-1] == text
    # the answer is decoded from text tokens only (greedy, deterministic)
    model, lay, tok = load_model_dir(model_dir["exp"])
    main(["--model_dir", str(model_dir["exp"]), "--audio", str(wav), "--text", "what is it?",
          "--output_dir", str(tmp_path / "qa2"), "--max_steps", "8"])
    assert (tmp_path / "qa2" / "text").read_text().rstrip("\n") == text


def test_bad_inputs(model_dir, tmp_path):
    wav8k = tmp_path / "a8k.wav"
    sf.write(wav8k, np.zeros(4000, dtype=np.float32), 8000)
    with pytest.raises(SystemExit, match="8000 Hz.*16000 Hz"):
        main(["--model_dir", str(model_dir["exp"]), "--audio", str(wav8k), "--text", "what?", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="empty"):
        main(["--model_dir", str(model_dir["exp"]), "--text", "  ", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="not a UALM model directory"):
        main(["--model_dir", str(tmp_path), "--text", "a dog", "--output_dir", str(tmp_path / "o")])


# ---------------------------------------------------------------- multi-segment text turns
def _text_model(max_positions=4096):
    from ualm_tk.lm import build_decoder
    from ualm_tk.models import UALMModel
    from ualm_tk.patterns import build_pattern
    from ualm_tk.tokens.layout import TokenLayout

    torch.manual_seed(0)
    dec = build_decoder("transformer", dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                            max_positions=max_positions))
    lay = TokenLayout([f"w{i}" for i in range(8)], num_codebooks=2, codebook_size=4)
    return UALMModel(layout=lay, decoder=dec, pattern=build_pattern("delay")).eval()


def _encode(model):
    return lambda text, what: model.layout.text_to_global([int(w[1:]) for w in text.split()])  # "w3 w5" -> ids


def _script(model, monkeypatch, tokens):
    """The model emits ``tokens`` (text-local ids, or "eot"/"eos") in stream 0, one per decode step,
    whatever its input; returns the list of prompt embeds ``[1,S,D]`` each generate call saw."""
    from ualm_tk.models import generation
    from ualm_tk.tokens import specials as sp

    lay = model.layout
    ids = iter([{"eot": sp.EOT, "eos": sp.EOS}[t] if isinstance(t, str) else lay.text_start + t for t in tokens])

    def logits_fn(h):  # [N,1,D] -> [N,K,V]
        logits = torch.zeros(h.shape[0], lay.num_codebooks, lay.vocab_size)
        logits[:, 0, next(ids)] = 100.0
        return logits

    prompts = []
    real = generation.generate

    def spy(decoder, prompt_embeds, *a, **kw):
        prompts.append(prompt_embeds.clone())
        return real(decoder, prompt_embeds, *a, **kw)

    monkeypatch.setattr(model, "logits_fn", logits_fn)
    monkeypatch.setattr(generation, "generate", spy)
    return prompts


def test_eot_continues_the_turn_with_the_training_format(monkeypatch):
    from ualm_tk.data.task_templates import make_segments, render_example

    model = _text_model()
    prompts = _script(model, monkeypatch, [3, "eot", 5, 6, "eos"])
    segs = make_prompt_segments("text_only", {"question": "w0 w1"}, _encode(model))
    (g,) = generate_from_segments(model, segs, max_steps=10)
    assert g.thinking == [[3]] and g.text_ids == [5, 6] and g.finished and g.codes is None
    # the second segment was decoded after "w3 <eot> <assistant> <text>": exactly the training
    # example (solution w3, answer w5 w6) up to the answer's content
    assert len(prompts) == 2 and prompts[1].shape[1] == prompts[0].shape[1] + 1 + 3
    full = render_example(make_segments("text_only", {"key": "k", "question": "w0 w1", "solution": "w3",
                                                      "answer": "w5 w6"}, _encode(model)),
                          model.layout, model.pattern)
    sol, ans = full.segments[1:]
    with torch.no_grad():
        for p, end in ((prompts[0], sol.content_start), (prompts[1], ans.content_start)):
            torch.testing.assert_close(p, model.embed_tokens(torch.from_numpy(full.tokens[:end])[None]))


def test_one_segment_answer_and_identical_samples(monkeypatch):
    model = _text_model()
    prompts = _script(model, monkeypatch, [4, 2, "eos"])
    segs = make_prompt_segments("text_only", {"question": "w0 w1"}, _encode(model))
    res = generate_from_segments(model, segs, max_steps=10, num_samples=2)
    assert len(prompts) == 1 and [(g.text_ids, g.thinking, g.finished) for g in res] == [([4, 2], [], True)] * 2
    res[0].text_ids.append(7)
    assert res[1].text_ids == [4, 2]  # rows are independent lists


def test_turn_stops_at_max_segments_max_steps_and_position_limit(monkeypatch):
    model = _text_model()
    segs = make_prompt_segments("text_only", {"question": "w0 w1"}, _encode(model))
    # a model that always closes with <eot>: max_segments bounds the turn, which is not finished
    prompts = _script(model, monkeypatch, [3, "eot"] * 3)
    (g,) = generate_from_segments(model, segs, max_steps=10, max_segments=3)
    assert len(prompts) == 3 and g.thinking == [[3], [3]] and g.text_ids == [3] and not g.finished
    # a segment cut by max_steps is not continued
    prompts = _script(model, monkeypatch, [3, 4])
    (g,) = generate_from_segments(model, segs, max_steps=2)
    assert len(prompts) == 1 and g.thinking == [] and g.text_ids == [3] and not g.finished
    # decoder limit 16, prompt 8: after "w3 w3 w3 <eot>" only 2 steps are left for the answer ...
    model = _text_model(max_positions=16)
    prompts = _script(model, monkeypatch, [3, 3, 3, "eot", 4, 4])
    (g,) = generate_from_segments(model, segs, max_steps=8)
    assert [p.shape[1] for p in prompts] == [8, 14] and g.thinking == [[3, 3, 3]] and g.text_ids == [4]
    assert not g.finished
    # ... and after 5 tokens + <eot> none: the turn ends there
    prompts = _script(model, monkeypatch, [3, 3, 3, 3, 3, "eot"])
    (g,) = generate_from_segments(model, segs, max_steps=8)
    assert len(prompts) == 1 and g.thinking == [] and g.text_ids == [3] * 5 and not g.finished
    with pytest.raises(ValueError, match="max_segments must be >= 1"):
        generate_from_segments(model, segs, max_segments=0)


def test_cli_prints_and_writes_the_thinking(model_dir, tmp_path, monkeypatch, capsys):
    from ualm_tk.models import generation

    model, lay, tok = load_model_dir(model_dir["exp"])
    some = [i for i in range(lay.text_size) if tok.decode([i]).strip().isalnum()][:3]
    think = [[some[0]], [some[1]]]
    monkeypatch.setattr(generation, "generate_from_segments",
                        lambda *a, **kw: [generation.Generation(None, [some[2]], True, think)])
    out = tmp_path / "o"
    main(["--model_dir", str(model_dir["exp"]), "--task", "text_only", "--text", "what is it?", "--output_dir", str(out)])
    expect = f"{tok.decode(think[0])} | {tok.decode(think[1])}"
    assert capsys.readouterr().out.splitlines() == [f"thinking: {expect}", tok.decode([some[2]])]
    assert (out / "thinking").read_text() == expect + "\n" and (out / "text").read_text() == tok.decode([some[2]]) + "\n"
    # a later answer without thinking leaves no stale thinking file
    monkeypatch.setattr(generation, "generate_from_segments",
                        lambda *a, **kw: [generation.Generation(None, [some[2]], True)])
    main(["--model_dir", str(model_dir["exp"]), "--task", "text_only", "--text", "what is it?", "--output_dir", str(out)])
    assert not (out / "thinking").exists()
