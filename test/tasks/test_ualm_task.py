"""LM training through ESPnet's AbsTask + Trainer on CPU: learning, checkpoint contents, exact resume."""
import torch
import yaml
from espnet2.train.reporter import Reporter

from ualm_tk.tasks.ualm import main

CONF = "egs2/TEMPLATE/ualm1/conf/train_ualm_tiny.yaml"


def train(c, out, repo_root, *extra):
    args = ["--config", str(repo_root / CONF), "--token_dir", str(c["token_dir"]), "--output_dir", str(out),
            "--audio_encoder_conf", "{size: tiny, dropout: 0.0}", "--seed", "3"]
    for t, p in c["data"].items():
        args += ["--train_data_path_and_name_and_type", f"{p},{t},data_json",
                 "--valid_data_path_and_name_and_type", f"{p},{t},data_json"]
    main(args + list(extra))


def reporter(out):
    r = Reporter()
    r.load_state_dict(torch.load(out / "checkpoint.pth", weights_only=False)["reporter"])
    return r


def test_train_learns_and_resumes_exactly(lm_corpus, tmp_path, repo_root):
    full = tmp_path / "full"
    train(lm_corpus, full, repo_root, "--max_epoch", "3")
    r = reporter(full)
    losses = [r.get_value("valid", "loss", e) for e in (1, 2, 3)]
    assert losses[2] < losses[1] < losses[0], losses  # valid = the training data: it is learnt
    ck = torch.load(full / "checkpoint.pth", weights_only=False)
    assert {"model", "optimizers", "schedulers", "reporter"} <= set(ck)
    assert ck["schedulers"][0]["last_epoch"] == 15  # 3 epochs x 5 steps
    # the experiment dir is a self-contained model dir
    assert (full / "token_list" / "token_list").is_file() and (full / "token_list" / "bpe.model").is_file()
    cfg = yaml.safe_load((full / "config.yaml").read_text())
    assert cfg["model"] == "ualm" and cfg["iterator_type"] == "task"

    # stop after 2 epochs, resume to 3: the same curve
    part = tmp_path / "part"
    train(lm_corpus, part, repo_root, "--max_epoch", "2")
    assert reporter(part).get_epoch() == 2
    train(lm_corpus, part, repo_root, "--max_epoch", "3", "--resume", "true")
    r2 = reporter(part)
    assert r2.get_epoch() == 3
    for e in (1, 2, 3):
        for key in ("loss", "acc_stream0"):
            a, b = r.get_value("train", key, e), r2.get_value("train", key, e)
            assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (e, key, a, b)
    assert torch.load(part / "checkpoint.pth", weights_only=False)["schedulers"][0]["last_epoch"] == 15
