import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "models"))
from lm_corpus import K, N, build_corpus, save_tiny_codec, train_tiny_lm  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs on one intra-op thread (the shared ``one_thread`` fixture)."""
    yield


@pytest.fixture(scope="session")
def dpo_corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("dpo_corpus"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, dpo_corpus, repo_root):
    """A tiny UALM trained for one epoch (the stage-5 model dir) and a tiny real codec dir."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dpo_exp")
    train_tiny_lm(dpo_corpus, root / "ualm", repo_root, "--seed", "1", "--audio_encoder_conf", "{size: tiny, dropout: 0.0}")
    save_tiny_codec(root / "codec")
    torch.set_num_threads(n)
    return dict(root=root, model_dir=root / "ualm", codec_dir=root / "codec")


@pytest.fixture(scope="session")
def candidates(trained, dpo_corpus, tmp_path_factory):
    """dpo_sample run as 2 shards: 3 candidates per prompt of the tiny corpus, with wavs."""
    from ualm_tk.bin.dpo_sample import main as dpo_sample

    root = tmp_path_factory.mktemp("cands")
    data_json = str(dpo_corpus["data"]["caption_to_audio"])
    for job in (1, 2):
        dpo_sample(["--model_dir", str(trained["model_dir"]), "--data_json", data_json, "--codec_dir",
                    str(trained["codec_dir"]), "--num_samples", "3", "--max_steps", "20", "--nj", "2", "--job",
                    str(job), "--output_dir", str(root / f"cands.{job}"), "--seed", "5"])
    return dict(root=root, dirs=[root / "cands.1", root / "cands.2"], data_json=data_json)
