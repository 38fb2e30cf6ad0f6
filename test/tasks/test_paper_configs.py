"""The paper-scale LM configs (egs2/TEMPLATE/ualm1/conf/tuning/) and the dry-run checker that validates them
with tiny stand-ins for the real checkpoints (a random Qwen2 and a random Whisper saved here)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ualm_tk.bin.lm_config_check import main as check_main
from ualm_tk.tasks import dry_run
from ualm_tk.tokens.layout import TokenLayout

sys.path.insert(0, str(Path(__file__).parent.parent / "audio_encoder"))
from audio_encoder_testlib import save_tiny_whisper  # noqa: E402

TUNING = Path("egs2/TEMPLATE/ualm1/conf/tuning")
GEN, UALM = "train_ualm_gen_qwen2.5_1.5b.yaml", "train_ualm_qwen2.5_7b.yaml"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Tiny random Qwen2 + Whisper checkpoints and a token dir shaped like the paper's (K=8, N=1024)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("stand_ins")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)).save_pretrained(root / "qwen2")
    save_tiny_whisper(root / "whisper", chunk_length=2, with_lm_head=False)
    TokenLayout([f"w{i}" for i in range(90)], 8, 1024).write(root / "tokens")
    return dict(qwen2=root / "qwen2", whisper=root / "whisper", tokens=root / "tokens")


def check_cmd(repo_root, s, yaml_name, *extra):
    cmd = ["--config", str(repo_root / TUNING / yaml_name), "--token_dir", str(s["tokens"]),
           "--override", f"decoder_conf.hf_model_dir={s['qwen2']}"]
    if yaml_name == UALM:
        cmd += ["--override", f"audio_encoder_conf.model_dir={s['whisper']}"]
    return cmd + list(extra)


def table_row(out: str, prefix: str):
    line = next(ln for ln in out.splitlines() if ln.startswith(prefix))
    built, full = line.split()[-2:]
    return int(built.replace(",", "")), int(full.replace(",", ""))


def test_configs_carry_the_papers_hyper_parameters(repo_root):
    for name in (GEN, UALM):
        c = yaml.safe_load((repo_root / TUNING / name).read_text())
        assert c["decoder"] == "hf" and c["pattern"] == "delay" and c["data_conf"]["cfg_drop"] == 0.05
        assert c["optim"] == "adamw" and c["optim_conf"]["lr"] == 1e-4 and c["optim_conf"]["betas"] == [0.9, 0.95]
        assert c["grad_clip"] == 1.0 and c["scheduler_conf"]["warmup_steps"] == 2000
        assert c["num_iters_per_epoch"] * c["max_epoch"] == 660_000 == c["scheduler_conf"]["first_cycle_steps"]
        assert c["batch_bins"] == 16384 and c["use_amp"] is True  # ~16 k tokens per GPU, bf16 autocast
        assert c["decoder_conf"]["gradient_checkpointing"] is True
    gen, ualm = (yaml.safe_load((repo_root / TUNING / n).read_text()) for n in (GEN, UALM))
    assert gen["audio_encoder"] == "none" and gen["task_factors"] == {}
    assert ualm["audio_encoder"] == "whisper" and ualm["audio_encoder_conf"]["pool"] == 2
    assert ualm["audio_encoder_conf"]["freeze"] is True and ualm["task_factors"] == {"caption_to_audio": 2.0}


def test_gen_config_checks_through_the_cli(repo_root, stand_ins, subprocess_env):
    r = subprocess.run([sys.executable, "-m", "ualm_tk.bin.lm_config_check"]
                       + check_cmd(repo_root, stand_ins, GEN, "--full_size",
                                   f"decoder={repo_root / TUNING / 'arch/qwen2.5-1.5b.json'}"),
                       env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "keys and registry names OK (decoder=hf, audio_encoder=None" in r.stdout
    built, full = table_row(r.stdout, "decoder (hf backbone)")
    assert built == 74_304  # the tiny stand-in really was built
    assert 1.30e9 < full < 1.32e9  # Qwen2.5-1.5B: 1.31 B non-embedding parameters (its model card)
    assert "audio_encoder" not in r.stdout.split("component", 1)[1]


def test_unified_config_builds_with_stand_ins_and_estimates_full_size(repo_root, stand_ins, capsys):
    arch = repo_root / TUNING / "arch"
    rc = check_main(check_cmd(repo_root, stand_ins, UALM, "--full_size", f"decoder={arch / 'qwen2.5-7b.json'}",
                              "--full_size", f"audio_encoder={arch / 'whisper-large-v3.json'}"))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 6.52e9 < table_row(out, "decoder (hf backbone)")[1] < 6.54e9  # Qwen2.5-7B: 6.53 B non-embedding
    assert 0.63e9 < table_row(out, "audio_encoder (whisper) [frozen]")[1] < 0.64e9  # Whisper-large-v3 encoder
    # vocabulary: 256 specials + 152,064 text + 8 x 1024 audio rows, embedding and head of width 3584
    assert table_row(out, "vocabulary embed+head+stream")[1] == 2 * (256 + 152064 + 8192) * 3584 + 7 * 3584
    assert table_row(out, "adapter")[1] == 1280 * 3584 + 3584
    ddp_gb = re.search(r"DDP training state per GPU .*: ([0-9.]+) GB", out)
    assert ddp_gb and float(ddp_gb.group(1)) > 80  # does not fit an 80 GB GPU: the YAML says so


def test_full_size_estimate_is_exact_on_the_stand_ins(repo_root, stand_ins):
    """Estimating from the stand-ins' own config.json must give the parameter count of the model built from them."""
    conf = dry_run.load_config(str(repo_root / TUNING / UALM), [f"decoder_conf.hf_model_dir={stand_ins['qwen2']}",
                                                              f"audio_encoder_conf.model_dir={stand_ins['whisper']}"])
    args = dry_run.parse_task_args(conf, str(stand_ins["tokens"]))
    model = dry_run.build_model(args)
    rep = dry_run.size_report(model, args, {"decoder": str(stand_ins["qwen2"]),
                                             "audio_encoder": str(stand_ins["whisper"])})
    tokens_text = 90  # the layout's text block is smaller than the stand-in's 96-row embedding: compare the rest
    for row in rep.rows:
        if row.component.startswith("vocabulary"):
            assert row.full - row.built == 2 * (96 - tokens_text) * 64
        else:
            assert row.full == row.built, row
    assert rep.total("built") == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("change, rc, message", [
    (["--override", "num_epochs=3"], 2, "unrecognized arguments: num_epochs"),
    (["--override", "decoder_conf.hf_dir=/x"], 1, "decoder_conf (decoder: hf): unknown key(s) ['hf_dir']"),
    (["--override", "optim_conf.beta=0.9"], 1, "optim_conf (optim: adamw): unknown key(s) ['beta']"),
    (["--override", "scheduler_conf.warmup=10"], 1, "unknown key(s) ['warmup']"),
    (["--override", "data_conf.cfg_dropout=0.1"], 1, "--data_conf: unknown key(s) ['cfg_dropout']"),
    (["--override", "model_conf.adaptor_layers=2"], 1, "model_conf (model: ualm): unknown key(s) ['adaptor_layers']"),
    (["--override", "decoder_conf.hf_model_dir=/path/to/Qwen2.5-1.5B"], 1, "/path/to/Qwen2.5-1.5B' has no config.json"),
    (["--override", "use_deepspeed=true"], 1, "use_deepspeed: true but deepspeed_config None is not a file"),
    (["--override", "decoder_conf"], 1, "expected KEY=VALUE"),
    # ESPnet's parser does not check YAML values against the choices; the checker does
    (["--override", "decoder=qwen"], 1, "decoder: --decoder must be one of ('transformer', 'hf'): --decoder qwen"),
    (["--override", "scheduler=cosine"], 1, "scheduler: 'cosine' is not one of"),
])
def test_bad_configs_are_rejected_naming_the_key(repo_root, stand_ins, capsys, change, rc, message):
    cmd = check_cmd(repo_root, stand_ins, GEN, *change)
    if rc == 2:  # ESPnet's own parser
        with pytest.raises(SystemExit) as e:
            check_main(cmd)
        assert e.value.code == 2
    else:
        assert check_main(cmd) == 1
    assert message in capsys.readouterr().err

