#!/usr/bin/env bash
# mini_ualm, quick profile: all 8 stages of run.sh on 2 CPU cores in under an hour, to see every stage's outputs
# (data dirs, codec and VAE tables, token files, training curves, decodes, RESULTS.md, spectrograms, sample wavs)
# before committing hours to the full run. Same corpus generator and models as run.sh, fewer clips and far fewer
# training steps: the models are weak (README "Quick profile" lists what it reaches and each stage's time).
# Keeps its own directories beside the full run's: corpus_quick/ data_quick/ dump_quick/ exp_quick/ results_quick/.
#   ./run_quick.sh                      # all stages (or: make demo)
#   ./run_quick.sh --stage 7 --stop_stage 8
# command-line options ("$@") override these, as in run.sh
set -euo pipefail
# generation length cap: 6 s (300 codec frames at 50 frames/s, + 7 rows that close the delay pattern); the full
# run's 12 s cap doubles stage 7's caption_to_audio time
gen_max_steps=$(( 6 * 50 + 7 ))
./run.sh \
    --datadir data_quick \
    --dumpdir dump_quick \
    --expdir exp_quick \
    --results_dir results_quick \
    --local_data_opts "--corpus_dir corpus_quick --num_clips 600 --train_clips 1600 --seed 0" \
    --codec_config conf/quick/codec.yaml \
    --vae_config conf/quick/vae.yaml \
    --lm_encoder_pretrain_config conf/quick/audio_encoder_pretrain.yaml \
    --lm_text_pretrain_epochs 0 \
    --lm_config conf/quick/train_ualm.yaml \
    --scorer_train_opts "--max_epochs 6" \
    --dpo_num_prompts 40 \
    --dpo_valid_prompts 20 \
    --dpo_num_samples 2 \
    --dpo_train_opts "--max_epoch 2" \
    --inference_opts "--max_steps ${gen_max_steps}" \
    --dpo_sample_opts "--max_steps ${gen_max_steps}" \
    "$@"
