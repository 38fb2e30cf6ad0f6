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
