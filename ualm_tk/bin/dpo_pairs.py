"""Score DPO candidates and build preference pairs (stage 6, step 2).

    python -m ualm_tk.bin.dpo_pairs --candidates_dir exp/ualm_dpo_tiny/cands/train/cands.{1,2} \\
        --data_json dump/caption_to_audio/train/data.json --metadata data/train/metadata \\
        --clap_dir exp/scorer_clap --tagger_dir exp/scorer_tagger --min_gap 0.05 \\
        --output_dir exp/ualm_dpo_tiny/pairs/train

Reward per candidate (:class:`ualm_tk.dpo.reward.CaptionReward`): ``similarity`` (``--clap_dir``:
cosine of caption and audio), ``event`` and ``order`` (``--tagger_dir`` + ``--metadata``), weighted
by ``--w_similarity/--w_event/--w_order``; or ``--rewards FILE`` (``<candidate> <reward>``) computed
elsewhere. Captions come from the data.json (``meta.caption``). Writes in ``--output_dir``:

* ``rewards`` (``<candidate> <reward>``), ``reward_components.json`` (every component per candidate);
* ``pairs.json``, ``chosen/data.json`` (the winners: data for the CE fine-tune), ``rejected/data.json``,
  ``codes.{ark,scp}`` (see :mod:`ualm_tk.dpo.pairs`);
* ``stats.json``: counts (prompts, pairs, skipped as too_few / tie / small_gap) and mean rewards.

``--score_only`` stops after the rewards and stats (to report a model's reward, e.g. before/after
DPO); ``--compare_rewards OTHER`` adds to stats.json the win rate of these candidates over those of
another ``rewards`` file on the same prompts (per prompt, mean reward of its candidates; ties 1/2).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

logger = logging.getLogger("ualm_tk.bin.dpo_pairs")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates_dir", nargs="+", required=True, help="dpo_sample output dir(s)")
    p.add_argument("--data_json", required=True, help="the caption_to_audio data.json the candidates were sampled from")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--rewards", default=None, help="precomputed '<candidate> <reward>' file instead of scorers")
    p.add_argument("--clap_dir", default=None, help="text-audio scorer dir (ualm_tk.scoring.models, has score())")
    p.add_argument("--tagger_dir", default=None, help="tagger scorer dir (has frame_posteriors())")
    p.add_argument("--metadata", default=None, help="data/<set>/metadata (JSON per utt with events, layout)")
    p.add_argument("--w_similarity", type=float, default=1.0)
    p.add_argument("--w_event", type=float, default=1.0)
    p.add_argument("--w_order", type=float, default=1.0)
    p.add_argument("--threshold", type=float, default=0.5, help="tagger posterior threshold for detection/onsets")
    p.add_argument("--min_gap", type=float, default=0.0, help="minimum reward gap best - worst for a pair")
    p.add_argument("--score_only", action="store_true", help="write rewards + stats, no pairs")
    p.add_argument("--compare_rewards", default=None, help="rewards file of another system: win rate in stats.json")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--log_level", default="INFO")
    return p


def build_reward(args, data):
    """CaptionReward from the scorer dirs (captions from data.json meta, events from --metadata)."""
    from ualm_tk.dpo.reward import CaptionReward
    from ualm_tk.scoring.models import load_scorer

    captions = {k: data.meta(k).get("caption") for k in data.keys()}
    missing = [k for k, v in captions.items() if not v]
    if args.clap_dir and missing:
        raise SystemExit(f"{args.data_json}: key '{missing[0]}' has no meta.caption (needed by --clap_dir)")
    metadata = None
    if args.tagger_dir:
        if not args.metadata:
            raise SystemExit("--tagger_dir needs --metadata (the events of every caption)")
        from ualm_tk.data.kaldi_files import read_kaldi_file

        raw = read_kaldi_file(args.metadata)
        metadata = {}
        for k in data.keys():
            utt = data.meta(k).get("utt", k)
            if utt not in raw:
                raise SystemExit(f"{args.metadata}: no entry for '{utt}' (prompt '{k}')")
            try:
                metadata[k] = json.loads(raw[utt])
            except json.JSONDecodeError as e:
                raise SystemExit(f"{args.metadata}: key '{utt}': not JSON: {e}")
    sim = load_scorer(args.clap_dir).score if args.clap_dir else None
    fp = load_scorer(args.tagger_dir).frame_posteriors if args.tagger_dir else None
    return CaptionReward(captions, metadata, similarity=sim, frame_posteriors=fp, threshold=args.threshold,
                         weights=dict(similarity=args.w_similarity, event=args.w_event, order=args.w_order))


def score_candidates(reward, c2p: Dict[str, str], wavs: Dict[str, str]):
    """-> ({cand: reward}, {cand: components})."""
    import soundfile as sf
    from tqdm import tqdm

    rewards, comps = {}, {}
    for c in tqdm(sorted(c2p), desc="reward", mininterval=5):
        try:
            wav, sr = sf.read(wavs[c], dtype="float32", always_2d=True)  # [L,C]
        except Exception as e:
            raise SystemExit(f"wav.scp: candidate '{c}': cannot read {wavs[c]}: {e}")
        comps[c] = reward.components(c2p[c], wav.T[:1], sr)  # [1,L]
        rewards[c] = reward.combine(comps[c])
    return rewards, comps


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    import torch

    from ualm_tk.data.kaldi_files import write_kaldi_file
    from ualm_tk.data.task_data import TaskData
    from ualm_tk.data.task_templates import TaskDataError
    from ualm_tk.dpo import pairs as P

    torch.set_num_threads(args.num_threads)
    if args.rewards is None and not (args.clap_dir or args.tagger_dir):
        raise SystemExit("give --rewards FILE or at least one scorer (--clap_dir, --tagger_dir)")
    try:
        data = TaskData.load(args.data_json)
        c2p, codes, wavs = P.load_candidate_dirs(args.candidates_dir) if args.rewards is None else \
            _codes_only(P, args.candidates_dir)
        unknown = sorted(set(c2p.values()) - set(data.keys()))
        if unknown:
            raise SystemExit(f"candidates of prompt(s) {unknown[:3]} are not in {args.data_json}")
        if args.rewards is not None:
            rewards = P.read_rewards(args.rewards)
            comps = {c: {"given": r} for c, r in rewards.items() if c in c2p}
            rewards = {c: rewards[c] for c in c2p if c in rewards}
        else:
            rewards, comps = score_candidates(build_reward(args, data), c2p, wavs)
        by_prompt = P.group_by_prompt(c2p, rewards)
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_kaldi_file(out / "rewards", {c: f"{r:.6g}" for c, r in rewards.items()})
        (out / "reward_components.json").write_text(json.dumps(comps, indent=1, sort_keys=True) + "\n")
        stats: Dict = {}
        if args.compare_rewards:
            other = P.read_rewards(args.compare_rewards)
            theirs = P.group_by_prompt(_prompt_of(other, set(by_prompt)), other)
            mean = lambda t: {p: sum(cs.values()) / len(cs) for p, cs in t.items()}  # noqa: E731
            stats["compare"] = dict(P.win_rate(mean(by_prompt), mean(theirs)), other=args.compare_rewards)
        if args.score_only:
            stats.update(P.summarize(by_prompt, {}))
        else:
            pairs, counts = P.select_pairs(by_prompt, args.min_gap)
            stats.update(counts=counts, **P.summarize(by_prompt, pairs))
            P.write_pairs(out, pairs, data, codes, counts=counts, min_gap=args.min_gap)
    except (TaskDataError, ValueError) as e:
        raise SystemExit(f"dpo_pairs: {e}")
    (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    logger.info("stats: %s", json.dumps(stats, sort_keys=True))
    return 0


def _codes_only(P, dirs):
    """cand2prompt + codes of candidate dirs (no wavs needed when the rewards are given)."""
    from ualm_tk.data.kaldi_files import read_kaldi_file

    c2p, codes = {}, {}
    for d in dirs:
        for name, table in (("cand2prompt", c2p), ("codes.scp", codes)):
            f = Path(d) / name
            if not f.is_file():
                raise SystemExit(f"{f}: missing ({d} is not a dpo_sample output dir)")
            for k, v in read_kaldi_file(f).items():
                if k in table:
                    raise SystemExit(f"{f}: candidate '{k}' also appears in another candidates dir")
                table[k] = v
    return c2p, codes, {}


def _prompt_of(other: Dict[str, float], prompts) -> Dict[str, str]:
    """Map another system's candidates ('<prompt>-cand<i>') to our prompts; every prompt must appear."""
    o2p = {c: c.rsplit("-cand", 1)[0] for c in other if c.rsplit("-cand", 1)[0] in prompts}
    missing = sorted(set(prompts) - set(o2p.values()))
    if missing:
        raise ValueError(f"--compare_rewards has no candidate for prompt(s) {missing[:3]}")
    return o2p


if __name__ == "__main__":
    sys.exit(main())
