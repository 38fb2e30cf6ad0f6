"""The DPO wrapper: reference hidden from parameters/state_dict, kept frozen and in eval; loss at start."""
import argparse
import math

import pytest
import torch

from ualm_tk.dpo.data import PairsDataset, collate_pairs
from ualm_tk.dpo.logprob import guided_logprobs, sequence_hidden
from ualm_tk.dpo.model import UALMDPOModel
from ualm_tk.inference import cfg_combine, stream_vocab_mask
from ualm_tk.inference.cfg import keep_conditional_stop
from ualm_tk.dpo.pairs import select_pairs, write_pairs
from ualm_tk.data.task_data import TaskData
from ualm_tk.data.task_templates import TaskDataError
from ualm_tk.lm import build_decoder
from ualm_tk.models import ModelInputError, UALMModel
from ualm_tk.patterns import build_pattern
from ualm_tk.tokens import specials as sp
from ualm_tk.tokens.layout import TokenLayout


def make_policy(layout, seed=0):
    torch.manual_seed(seed)
    dec = build_decoder("transformer", dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, dropout=0.1))
    return UALMModel(layout=layout, decoder=dec, pattern=build_pattern("delay"))


@pytest.fixture(scope="module")
def pairs_path(dpo_corpus, tmp_path_factory):
    """A pairs.json built from two real codes entries of the corpus per prompt (swapped as candidates)."""
    prompts = TaskData.load(dpo_corpus["data"]["caption_to_audio"])
    keys = prompts.keys()[:4]
    refs = {}
    for i, k in enumerate(keys):
        other = keys[(i + 1) % len(keys)]
        refs[f"{k}-cand0"] = prompts.segments(k)[-1].codes
        refs[f"{k}-cand1"] = prompts.segments(other)[-1].codes
    pairs, counts = select_pairs({k: {f"{k}-cand0": 1.0, f"{k}-cand1": 0.0} for k in keys})
    return str(write_pairs(tmp_path_factory.mktemp("pairs"), pairs, prompts, refs, counts=counts))


@pytest.fixture(scope="module")
def pair_batch(dpo_corpus, pairs_path):
    ds = PairsDataset([pairs_path], dpo_corpus["layout"], build_pattern("delay"))
    return collate_pairs([ds[(i, 0)] for i in range(len(ds))])[1]


def test_reference_is_not_saved_not_optimised_and_stays_frozen(dpo_corpus):
    policy = make_policy(dpo_corpus["layout"])
    model = UALMDPOModel(policy)
    plain = make_policy(dpo_corpus["layout"], seed=1)
    assert set(model.state_dict()) == set(plain.state_dict())  # a plain UALMModel's keys
    assert plain.load_state_dict(model.state_dict()) is not None
    n_policy = sum(p.numel() for p in policy.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_policy
    assert all(not p.requires_grad for p in model.reference.parameters())
    model.train()
    assert model.policy.training and not model.reference.training
    model.to(torch.float64)
    assert next(model.reference.parameters()).dtype == torch.float64
    # loading a checkpoint changes the policy, never the reference
    ref_before = {k: v.clone() for k, v in model.reference.state_dict().items()}
    model.load_state_dict({k: v.double() for k, v in plain.state_dict().items()})
    assert all(torch.equal(ref_before[k], v) for k, v in model.reference.state_dict().items())
    assert torch.equal(model.policy.head.weight, plain.head.weight.double())


def test_loss_starts_at_log2_plus_ce_and_only_the_policy_learns(dpo_corpus, pair_batch):
    model = UALMDPOModel(make_policy(dpo_corpus["layout"]), beta=0.1, ce_weight=1.0).eval()
    loss, stats, weight = model(**pair_batch)
    B = pair_batch["tokens"].shape[0] // 2
    assert float(weight) == B == 4
    assert stats["dpo_loss"].item() == pytest.approx(math.log(2), abs=1e-5)
    assert loss.item() == pytest.approx(math.log(2) + stats["ce_chosen"].item(), abs=1e-5)
    loss.backward()
    assert model.policy.head.weight.grad is not None
    assert all(p.grad is None for p in model.reference.parameters())
    # ESPnet's trainer divides the returned loss in place by accum_grad: the reported loss is a copy
    reported = stats["loss"].item()
    with torch.no_grad():
        loss /= 2
    assert stats["loss"].item() == reported
    with pytest.raises(ModelInputError, match="B chosen rows then B rejected rows"):
        model(tokens=pair_batch["tokens"][:3], loss_mask=pair_batch["loss_mask"][:3], lengths=pair_batch["lengths"][:3])


def test_bad_settings_are_errors(dpo_corpus):
    with pytest.raises(ValueError, match="beta"):
        UALMDPOModel(make_policy(dpo_corpus["layout"]), beta=0.0)
    with pytest.raises(ValueError, match="ce_weight"):
        UALMDPOModel(make_policy(dpo_corpus["layout"]), ce_weight=-1.0)
    with pytest.raises(ValueError, match="not both 0"):
        UALMDPOModel(make_policy(dpo_corpus["layout"]), ce_weight=0.0, dpo_weight=0.0)


def test_dpo_conf_defaults_numbers_and_errors():
    from ualm_tk.tasks.ualm_dpo import dpo_conf

    conf = dpo_conf(argparse.Namespace(dpo_conf={"guidance_scale": 3, "beta": "0.5"}))
    assert conf["guidance_scale"] == 3.0 and conf["beta"] == 0.5 and conf["ce_weight"] == 1.0
    assert dpo_conf(argparse.Namespace(dpo_conf=None))["guidance_scale"] is None  # plain DPO by default
    with pytest.raises(ValueError, match="guidance_scale: expected a number, got 'high'"):
        dpo_conf(argparse.Namespace(dpo_conf={"guidance_scale": "high"}))
    assert dpo_conf(argparse.Namespace(dpo_conf=None))["length_normalize"] is False
    assert dpo_conf(argparse.Namespace(dpo_conf={"length_normalize": "true"}))["length_normalize"] is True
    assert dpo_conf(argparse.Namespace(dpo_conf={"length_normalize": True}))["length_normalize"] is True
    with pytest.raises(ValueError, match="length_normalize: expected true or false, got 'yes please'"):
        dpo_conf(argparse.Namespace(dpo_conf={"length_normalize": "yes please"}))


def test_length_normalized_dpo_compares_per_token_log_probs(dpo_corpus, pair_batch):
    """length_normalize: the DPO margin is β·(Δ_c / w_c − Δ_r / w_r) with Δ = policy − reference summed log-prob
    and w a response's summed loss weight; at the start (policy = reference) still log 2; the gradient differs
    from summed DPO's."""
    from ualm_tk.dpo.logprob import sequence_logprobs
    from ualm_tk.losses.dpo import dpo_loss

    B = pair_batch["tokens"].shape[0] // 2
    start = UALMDPOModel(make_policy(dpo_corpus["layout"]), length_normalize=True).eval()
    assert start(**pair_batch)[1]["dpo_loss"].item() == pytest.approx(math.log(2), abs=1e-5)
    moved = make_policy(dpo_corpus["layout"], seed=3)  # a policy that differs from the reference
    models = {norm: UALMDPOModel(moved, make_policy(dpo_corpus["layout"]), beta=2.0, ce_weight=0.0,
                                 length_normalize=norm).eval() for norm in (False, True)}
    args = {k: pair_batch[k] for k in ("tokens", "loss_mask", "lengths")}
    with torch.no_grad():
        pol = sequence_logprobs(moved.eval(), **args)
        ref = sequence_logprobs(models[True].reference, **args)
        _, stats, _ = models[True](**pair_batch)
        _, summed, _ = models[False](**pair_batch)
    w = pol.weight
    assert not torch.allclose(w[:B], w[B:])  # the corpus's responses differ in length
    lp, lr = pol.logp / w, ref.logp / w
    want = dpo_loss(lp[:B], lp[B:], lr[:B], lr[B:], beta=2.0)
    assert stats["dpo_loss"].item() == pytest.approx(want.loss.item(), rel=1e-5)
    assert stats["dpo_reward_margin"].item() == pytest.approx(want.reward_margin.item(), rel=1e-5, abs=1e-7)
    want_sum = dpo_loss(pol.logp[:B], pol.logp[B:], ref.logp[:B], ref.logp[B:], beta=2.0)
    assert summed["dpo_loss"].item() == pytest.approx(want_sum.loss.item(), rel=1e-5)
    assert abs(stats["dpo_loss"].item() - summed["dpo_loss"].item()) > 1e-3


def test_ce_only_mode_is_the_lm_loss_on_winners(dpo_corpus, pair_batch):
    """dpo_weight 0: the loss is exactly the UALM loss of the chosen rows (the CE fine-tune before DPO)."""
    policy = make_policy(dpo_corpus["layout"]).eval()
    model = UALMDPOModel(policy, dpo_weight=0.0).eval()
    loss, stats, _ = model(**pair_batch)
    B = pair_batch["tokens"].shape[0] // 2
    lm_loss, _, _ = policy(tokens=pair_batch["tokens"][:B], loss_mask=pair_batch["loss_mask"][:B],
                           lengths=pair_batch["lengths"][:B])
    assert loss.item() == pytest.approx(lm_loss.item(), rel=1e-5)


def test_task_rejects_bad_arguments(dpo_corpus, tmp_path, trained):
    from ualm_tk.tasks.ualm_dpo import main

    with pytest.raises(FileNotFoundError, match="give a stage-5 model dir"):
        main(["--init_model_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
              "--train_data_path_and_name_and_type", "x,dpo,dpo_pairs",
              "--valid_data_path_and_name_and_type", "x,dpo,dpo_pairs"])
    with pytest.raises(ValueError, match="third field must be 'dpo_pairs'"):
        p = str(dpo_corpus["data"]["caption_to_audio"])
        main(["--init_model_dir", str(trained["model_dir"]), "--output_dir", str(tmp_path / "o2"),
              "--train_data_path_and_name_and_type", f"{p},caption_to_audio,data_json",
              "--valid_data_path_and_name_and_type", f"{p},caption_to_audio,data_json"])
    with pytest.raises(ValueError, match="unknown key"):
        main(["--init_model_dir", str(trained["model_dir"]), "--output_dir", str(tmp_path / "o3"),
              "--dpo_conf", "{gamma: 1}", "--train_data_path_and_name_and_type", "x,dpo,dpo_pairs",
              "--valid_data_path_and_name_and_type", "x,dpo,dpo_pairs"])


def test_dpo_takes_the_stage5_stream_weights_unless_its_config_sets_them(trained, tmp_path):
    """DPO's log-probs weight the codec streams as the stage-5 loss did (data_conf.audio_weight)."""
    import argparse
    import shutil

    import yaml

    from ualm_tk.tasks.ualm import DATA_CONF_DEFAULTS
    from ualm_tk.tasks.ualm_dpo import adopt_init_architecture

    init = tmp_path / "init"
    shutil.copytree(trained["model_dir"], init, ignore=shutil.ignore_patterns("*.pth"))
    cfg = yaml.safe_load((init / "config.yaml").read_text())
    K = TokenLayout.load(init / "token_list").num_codebooks
    weights = [1.0] + [0.0] * (K - 1)
    cfg["data_conf"] = dict(cfg.get("data_conf") or {}, audio_weight=weights)
    (init / "config.yaml").write_text(yaml.safe_dump(cfg))

    def adopted(own):
        args = argparse.Namespace(init_model_dir=str(init), token_dir=None,
                                  data_conf=dict(DATA_CONF_DEFAULTS, audio_weight=own))
        adopt_init_architecture(args)
        return args.data_conf["audio_weight"]

    assert adopted(None) == weights
    assert adopted(0.5) == 0.5


def test_unconditional_rows_keep_the_cfg_branch_trained(dpo_corpus, pairs_path, pair_batch):
    """uncond_ce_weight: a third row per pair (the winner with its caption blanked) adds its CE; DPO is unchanged."""
    layout = dpo_corpus["layout"]
    plain_ds = PairsDataset([pairs_path], layout, build_pattern("delay"))
    ds = PairsDataset([pairs_path], layout, build_pattern("delay"), uncond_sides=("chosen",))
    assert (ds.lengths * 2 == plain_ds.lengths * 3).all()  # a pair now adds 3 rows of positions to a batch
    ex = ds[(0, 0)]
    chosen, uncond = ex["chosen"], ex["uncond_chosen"]
    assert "uncond_rejected" not in ex
    assert uncond["tokens"].shape == chosen["tokens"].shape
    blanked = (uncond["tokens"] != chosen["tokens"]).any(-1)  # [S]
    assert blanked.any() and (uncond["tokens"][blanked] == sp.PAD).all()  # the caption, nothing else
    on = uncond["loss_mask"] > 0
    assert on.any() and not on[blanked].any() and (chosen["loss_mask"][on] > 0).all()  # loss on the audio only
    _, batch = collate_pairs([ds[(i, 0)] for i in range(len(ds))])
    B = len(ds)
    assert batch["tokens"].shape[0] == 3 * B
    assert torch.equal(batch["tokens"][: 2 * B], pair_batch["tokens"])

    reference = make_policy(layout, seed=1)  # policy != reference: a DPO loss away from log 2
    with_u = UALMDPOModel(make_policy(layout), reference, beta=10.0, uncond_ce_weight=0.5).eval()
    without = UALMDPOModel(make_policy(layout), reference, beta=10.0).eval()
    loss, stats, weight = with_u(**batch)
    loss0, stats0, _ = without(**pair_batch)
    assert float(weight) == B
    assert stats["dpo_loss"].item() == pytest.approx(stats0["dpo_loss"].item(), rel=1e-5)
    assert abs(stats["dpo_loss"].item() - math.log(2)) > 1e-3
    # the unconditional CE is the plain LM loss of those rows
    policy = with_u.policy
    lm_uncond, _, _ = policy(tokens=batch["tokens"][2 * B:], loss_mask=batch["loss_mask"][2 * B:],
                             lengths=batch["lengths"][2 * B:])
    assert stats["ce_uncond"].item() == pytest.approx(lm_uncond.item(), rel=1e-5)
    assert loss.item() == pytest.approx(loss0.item() + 0.5 * stats["ce_uncond"].item(), rel=1e-5)
    with pytest.raises(ModelInputError, match="B unconditional chosen rows"):
        with_u(**pair_batch)  # 2B rows where 3B are expected
    with pytest.raises(TaskDataError, match="mixes pairs"):
        collate_pairs([ds[(0, 0)], plain_ds[(1, 0)]])
    with pytest.raises(ValueError, match="uncond_ce_weight"):
        UALMDPOModel(make_policy(layout), uncond_ce_weight=-1.0)


@pytest.fixture(scope="module")
def guided_batch(dpo_corpus, pairs_path):
    ds = PairsDataset([pairs_path], dpo_corpus["layout"], build_pattern("delay"), uncond_sides=("chosen", "rejected"))
    return collate_pairs([ds[(i, 0)] for i in range(len(ds))])[1]


def sampler_logprob(model, cond_hidden, uncond_hidden, tokens, mask, scale):
    """One row's Σ mask·log p of its tokens, position by position through the CFG sampler's own steps
    (ualm_tk.inference.incremental: full logits, cfg_combine, keep_conditional_stop, the vocabulary mask)."""
    lay = model.layout
    K = model.num_streams
    allowed = stream_vocab_mask(model.vocab_size, [lay.stream_vocab_range(k) for k in range(K)],
                                [[sp.EOS]] + [[]] * (K - 1))
    bias = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))  # [K,V]
    logits = torch.cat([model.full_logits(cond_hidden[None]), model.full_logits(uncond_hidden[None])])  # [2,S-1,K,V]
    total = 0.0
    for s in range(tokens.shape[0] - 1):
        w = mask[s + 1]  # [K]
        if not (w > 0).any():
            continue
        step = logits[:, s]  # [2,K,V] cond row, uncond row
        guided = cfg_combine(step, scale).float()  # [1,K,V]
        if scale != 1.0:
            guided = guided.clone()
            guided[:, 0] = keep_conditional_stop(guided[:, 0] + bias[0], step[:1, 0].float() + bias[0],
                                                 torch.tensor([sp.EOS]))
        logp = torch.log_softmax(guided + bias, dim=-1)[0]  # [K,V]
        for k in range(K):
            if w[k] > 0:
                total += float(w[k]) * float(logp[k, tokens[s + 1, k]])
    return total


@torch.no_grad()
@pytest.mark.parametrize("scale", [3.0, 1.0])
def test_guided_logprobs_are_what_the_cfg_sampler_samples(dpo_corpus, guided_batch, scale):
    """DPO at guidance_scale λ scores each response under the sampler's distribution at λ."""
    model = make_policy(dpo_corpus["layout"]).eval()
    b = guided_batch
    B = b["tokens"].shape[0] // 4
    hidden = sequence_hidden(model, b["tokens"], b["lengths"])  # [4B,S-1,D]
    cond, uncond = slice(0, 2 * B), slice(2 * B, 4 * B)
    got = guided_logprobs(model, hidden[cond], hidden[uncond], b["tokens"][cond], b["tokens"][uncond],
                          b["loss_mask"][cond], b["loss_mask"][uncond], scale)  # [2B]
    for r in range(2 * B):
        want = sampler_logprob(model, hidden[r], hidden[2 * B + r], b["tokens"][r], b["loss_mask"][r], scale)
        assert got[r].item() == pytest.approx(want, rel=1e-4), r
    # the unconditional rows must be the same responses, row for row
    swapped = torch.arange(2 * B, 4 * B).roll(1)
    with pytest.raises(ModelInputError, match="differ|scores"):
        guided_logprobs(model, hidden[cond], hidden[swapped], b["tokens"][cond], b["tokens"][swapped],
                        b["loss_mask"][cond], b["loss_mask"][swapped], scale)


def test_guided_dpo_starts_at_log2_and_moves_the_guided_margin(dpo_corpus, pairs_path, guided_batch):
    layout = dpo_corpus["layout"]
    plain_ds = PairsDataset([pairs_path], layout, build_pattern("delay"))
    three_plain_pairs = collate_pairs([plain_ds[(i, 0)] for i in range(3)])[1]  # 6 rows
    guided_ds = PairsDataset([pairs_path], layout, build_pattern("delay"), uncond_sides=("chosen", "rejected"))
    assert (guided_ds.lengths * 2 == plain_ds.lengths * 4).all()  # a pair adds 4 rows of positions to a batch
    ex = guided_ds[(0, 0)]
    # the rejected response, scored after the blanked caption: the same positions and weights
    assert (ex["uncond_rejected"]["loss_mask"] == ex["rejected"]["loss_mask"]).all()
    with pytest.raises(TaskDataError, match="uncond_sides"):
        PairsDataset([pairs_path], layout, build_pattern("delay"), uncond_sides=("winner",))
    model = UALMDPOModel(make_policy(layout), guidance_scale=3.0, ce_weight=0.0, beta=1.0).eval()
    loss, stats, weight = model(**guided_batch)
    B = guided_batch["tokens"].shape[0] // 4
    assert float(weight) == B and loss.item() == pytest.approx(math.log(2), abs=1e-5)  # policy == reference
    with pytest.raises(ModelInputError, match="B unconditional rejected rows"):
        model(**three_plain_pairs)  # no unconditional rows
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    margins = []
    for _ in range(8):
        loss, stats, _ = model(**guided_batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        margins.append(stats["dpo_reward_margin"].item())
    assert margins[-1] > margins[0] + 1e-3, margins
    with pytest.raises(ValueError, match="guidance scale"):
        UALMDPOModel(make_policy(layout), guidance_scale=-1.0)
