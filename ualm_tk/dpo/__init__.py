"""DPO for UALM (DESIGN.md §6): candidates -> rewards -> preference pairs -> CE on winners -> DPO.

| module | job |
|---|---|
| :mod:`ualm_tk.dpo.logprob` | summed log-prob of each row's assistant tokens, weighted like the LM loss |
| :mod:`ualm_tk.dpo.sampling` | n candidates per caption_to_audio prompt (CFG), codes to kaldiio arks, wavs |
| :mod:`ualm_tk.dpo.reward` | ``reward_fn(caption_key, wav[1,L], sr) -> float`` from scorer similarity + event/order match |
| :mod:`ualm_tk.dpo.pairs` | (best, worst) per prompt when the reward gap passes a threshold; pairs.json + winners data.json |
| :mod:`ualm_tk.dpo.data` | pairs dataset and bucketed pair batches for ESPnet's trainer |
| :mod:`ualm_tk.dpo.model` | policy + frozen reference; DPO(β) + λ·CE on winners; saves the policy only |

The pure loss is :func:`ualm_tk.losses.dpo.dpo_loss`; training runs through
:mod:`ualm_tk.tasks.ualm_dpo`. The whole stage, from a stage-5 model dir ``exp/ualm_X``
(run in the recipe dir; ``JOB`` arrays through ``${cmd}`` as in the other stages)::

    # 1. candidates (n per prompt, CFG), for the training prompts and a few valid prompts
    python -m ualm_tk.bin.dpo_sample --model_dir exp/ualm_X --data_json dump/caption_to_audio/train/data.json \\
        --codec_dir CODEC --num_samples 4 --nj N --job JOB --output_dir exp/ualm_dpo_X/cands/train/cands.JOB
    # 2. rewards + pairs (scorers of ualm_tk.scoring.models; or --rewards FILE)
    python -m ualm_tk.bin.dpo_pairs --candidates_dir exp/ualm_dpo_X/cands/train/cands.* \\
        --data_json dump/caption_to_audio/train/data.json --metadata data/train/metadata \\
        --clap_dir SCORER_CLAP --tagger_dir SCORER_TAGGER --min_gap 0.05 --output_dir exp/ualm_dpo_X/pairs/train
    # 3. CE fine-tune on the winners (reference for DPO = this model)
    python -m ualm_tk.tasks.ualm_dpo --config conf/train_ualm_dpo.yaml --init_model_dir exp/ualm_X \\
        --dpo_conf "{dpo_weight: 0.0}" --output_dir exp/ualm_dpo_X/ce \\
        --train_data_path_and_name_and_type exp/ualm_dpo_X/pairs/train/pairs.json,dpo,dpo_pairs \\
        --valid_data_path_and_name_and_type exp/ualm_dpo_X/pairs/valid/pairs.json,dpo,dpo_pairs
    # 4. DPO (β 0.1) + CE on winners (λ 1)
    python -m ualm_tk.tasks.ualm_dpo --config conf/train_ualm_dpo.yaml --init_model_dir exp/ualm_dpo_X/ce \\
        --output_dir exp/ualm_dpo_X ... (same data options)
    # 5. reward and win rate before/after: sample held-out prompts with both models, then
    python -m ualm_tk.bin.dpo_pairs --score_only --candidates_dir AFTER/cands.* ... --output_dir AFTER/score \\
        --compare_rewards BEFORE/score/rewards

``exp/ualm_dpo_X`` (and ``.../ce``) are plain UALM model dirs for ``ualm_tk.bin.generate`` and stage 7.
"""
