#!/usr/bin/env bash
# mini_ualm: the CPU recipe on a corpus synthesised locally from a seed (speech, real
# recordings, MIDI instruments, tones, sound effects and their compositions), every caption
# true by construction. Runs on 2 CPU cores; command-line options ("$@") override these.
#   ./run.sh                          # all stages this version implements
#   ./run.sh --stage 2 --stop_stage 2 # one stage
#   ./run.sh --local_data_opts "--num_clips 60"   # a tiny corpus
set -euo pipefail
./ualm.sh \
    --nj 2 \
    --local_data_opts "--corpus_dir corpus --num_clips 2000 --seed 0" \
    --fs 16000 \
    --audio_channels mono \
    --min_dur 0.5 \
    --max_dur 12.0 \
    --codec_config conf/codec/mini_rvq.yaml \
    --bpe_vocab_size 1000 \
    "$@"
