#!/usr/bin/env bash
# The UALM recipe template: every stage of every corpus recipe lives here. A corpus recipe's
# run.sh only sets options and passes "$@" last, e.g.
#   ./ualm.sh --local_data_opts "--num_clips 2000" "$@"
#
#  stage 1  data preparation (local/data.sh)         -> data/<set>/
#  stage 2  audio formatting + validation            -> dump/audio/<set>/ (+ rejected report)
#  stage 3  codec (and enhancement VAE) training     -> exp/codec_<tag>/, exp/vae_<tag>/
#  stage 4  tokenisation                             -> dump/codes/<set>/, data/token_list/, dump/<task>/<set>/
#  stage 5  LM training                              -> exp/ualm_<tag>/
#           (5a audio encoder pre-training           -> exp/audio_encoder_<tag>/,
#            5b decoder text pre-training            -> exp/text_pretrain_<tag>/)
#  stage 6  DPO                                      -> exp/ualm_dpo_<tag>/
#  stage 7  inference                                -> <exp>/decode_<tag>/<set>/
#  stage 8  scoring                                  -> scores.json + RESULTS.md
#
# Every stage logs "Stage N: <what>: <src> -> <dst>", skips itself when its outputs are complete
# (a .done file records the options that made them; --force true redoes it), and when a job
# fails prints the failing job's log.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }
die() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0")) ERROR: $*" >&2; exit 1; }

# Stages this version of the toolkit implements, in order.
stage_names=([1]="data preparation" [2]="audio formatting and validation"
  [3]="codec and enhancement-VAE training" [4]="tokenisation" [5]="LM training" [6]="DPO"
  [7]="inference" [8]="scoring")
last_implemented_stage=8

# <options>
# first stage to run
stage=1
# last stage to run (default: the last stage this version implements)
stop_stage=${last_implemented_stage}
# redo stages whose outputs already exist
force=false
# number of parallel jobs for data stages
nj=2
# name of the training set
train_set=train
# name of the validation set
valid_set=valid
# names of the test sets, space separated
test_sets=test
# directory of Kaldi-style data dirs written by stage 1
datadir=data
# directory for dumped audio, codes and task data
dumpdir=dump
# directory for models and decodes
expdir=exp
# extra options for local/data.sh (stage 1)
local_data_opts=
# stage 2: sample rate of the formatted audio (the codec's rate)
fs=16000
# stage 2: channel policy of the formatted audio: mono (average channels) or keep
audio_channels=mono
# stage 2: audio file format of the formatted copies: wav or flac
audio_format=wav
# stage 2: shortest clip kept, in seconds
min_dur=0.5
# stage 2: longest clip kept, in seconds
max_dur=30.0
# stage 2: a clip whose peak is below this level (dBFS) is rejected as silent
silence_db=-60.0
# stage 2: fail the stage when more than this share of a set is rejected
max_reject_share=0.2
# stage 3: training config of the codec (skipped when --codec_dir is given)
codec_config=conf/codec/mini_rvq.yaml
# stage 3: name of the codec experiment, exp/codec_<tag> (default: the config's file name)
codec_tag=
# stage 3/4: an already trained codec directory (e.g. a saved X-Codec); skips codec training
codec_dir=
# stage 3: extra options for python -m ualm_tk.bin.codec_train
codec_train_opts=
# stage 3: training config of the enhancement VAE; empty: no VAE (skipped when --vae_dir is given)
vae_config=conf/vae/mini.yaml
# stage 3: name of the VAE experiment, exp/vae_<tag> (default: the config's file name)
vae_tag=
# stage 3: an already trained VAE directory; skips VAE training
vae_dir=
# stage 3: extra options for python -m ualm_tk.bin.vae_train
vae_train_opts=
# stage 4: sentencepiece BPE vocabulary size of the text block
bpe_vocab_size=1000
# stage 4: task templates to build data.json for
tasks="caption_to_audio audio_to_caption audio_qa audio_qa_dialog text_only"
# stage 4: extra options for python -m ualm_tk.bin.make_task_data
task_data_opts=
# stage 5: training config of the LM (python -m ualm_tk.tasks.ualm --config)
lm_config=conf/train_ualm.yaml
# stage 5: name of the LM experiment, exp/ualm_<tag> (default: the config's file name)
lm_tag=
# stage 5a: config of the audio encoder's pre-training on the train set's categorical question labels
# (python -m ualm_tk.bin.audio_encoder_pretrain); the LM then starts from it. Empty: the encoder starts random
lm_encoder_pretrain_config=
# stage 5b: epochs (of --lm_config's num_iters_per_epoch steps) of decoder pre-training on text_only alone, with
# --lm_config's model, batch and optimiser; the LM then starts from its decoder, embeddings and head (not its
# audio encoder or adapter). 0: no text pre-training, the decoder starts random
lm_text_pretrain_epochs=0
# stage 5: task templates the LM trains on (each needs dump/<task>/<train set>/data.json from stage 4)
lm_train_tasks="caption_to_audio audio_to_caption audio_qa_dialog text_only"
# stage 5: validation set of the LM (default: --valid_set)
lm_valid_set=
# stage 5: extra options for python -m ualm_tk.tasks.ualm (e.g. "--max_epoch 3 --task_factors {caption_to_audio: 2}")
lm_train_opts=
# stage 5: print the training command the job backend would run, then stop (checks multi-GPU/multi-node wiring)
lm_dry_run=false
# stage 5: GPUs per node (0: CPU); >1 on one node: ESPnet spawns one DDP process per GPU (nccl)
ngpu=0
# stage 5: nodes; >1 needs the slurm backend: srun starts one task per node, each with --ngpu processes
num_nodes=1
# stage 5: CPU threads of the training job with --ngpu 0 (0: every CPU this process may use; path.sh's
# OMP_NUM_THREADS=1 is meant for parallel data jobs, not for the one training job)
lm_num_threads=0
# stage 6: DPO training config (python -m ualm_tk.tasks.ualm_dpo --config; also runs the CE fine-tune on winners)
# (default: the recipe's conf/train_ualm_dpo.yaml, else the template's)
dpo_config=
# stage 6: name of the DPO experiment, exp/ualm_dpo_<tag> (default: the stage-5 tag, --lm_tag)
dpo_tag=
# stage 6: parallel candidate-sampling jobs per set (default: --inference_nj)
dpo_nj=
# stage 6: training prompts to sample candidates for (the first N caption_to_audio keys of --train_set)
dpo_num_prompts=200
# stage 6: validation prompts to sample candidates for (pairs for the validation loss, reward before/after)
dpo_valid_prompts=40
# stage 6: candidates sampled per prompt (CFG, top-k and temperature as in stage 7)
dpo_num_samples=4
# stage 6: smallest reward gap between a pair's winner and loser (smaller gaps are skipped)
dpo_min_gap=0.0
# stage 6: extra options for python -m ualm_tk.bin.dpo_sample (e.g. "--max_steps 300")
dpo_sample_opts=
# stage 6: extra options for python -m ualm_tk.bin.dpo_pairs (e.g. "--w_order 0 --threshold 0.4")
dpo_pairs_opts=
# stage 6: fine-tune on the winners with cross-entropy before DPO (the paper's order; the fine-tuned model is
# then DPO's init and frozen reference); false: DPO starts from the stage-5 model, which is the reference
dpo_ce_finetune=true
# stage 6: extra options of the CE fine-tune on winners (same config with --dpo_conf dpo_weight=0.0)
dpo_ce_opts="--max_epoch 1"
# stage 6: extra options of the DPO training (e.g. "--max_epoch 2 --dpo_conf beta=0.2")
dpo_train_opts=
# stage 7: task templates to decode on every test set
decode_tasks="audio_qa text_only caption_to_audio audio_to_caption"
# stage 7: number of parallel decoding jobs per task and set
inference_nj=2
# stage 7: GPUs per decoding job (0: CPU; 1: --device cuda through ${cuda_cmd} --gpu 1)
inference_ngpu=0
# stage 7: extra options for python -m ualm_tk.bin.lm_decode (e.g. "--max_steps 300 --num_samples 2")
inference_opts=
# stage 7: name of the decode dir, <model>/decode_<tag> (default: from the sampling options)
inference_tag=
# stage 7: classifier-free guidance scale of audio generation (<= 0: no CFG)
guidance_scale=3.0
# stage 7: top-k of audio sampling
top_k=20
# stage 7: temperature of audio sampling
temperature=0.8
# stage 7: sampling seed (each key's seed derives from it and the key)
inference_seed=0
# stage 7: model dir to decode with (default: the stage-5 model exp/ualm_<tag>, and the stage-6 model
# exp/ualm_dpo_<tag> too once stage 6 has finished; each decoded into its own <model>/decode_<tag>/)
inference_model=
# stage 6/8: trained evaluator model dirs (scorer components), space-separated; empty: train them from --scorer_configs
scorer_dirs=
# stage 6/8: evaluator training configs, one exp/scorer_<config name> each (default: the template's tagger + clap_mini)
scorer_configs=
# stage 6/8: sets the evaluators are trained on (default: --train_set); they are evaluated on the first test set
scorer_train_sets=
# stage 6/8: extra options for python -m ualm_tk.bin.scorer_train (e.g. "--max_epochs 1")
scorer_train_opts=
# stage 8: extra options for python -m ualm_tk.bin.score_dir (e.g. "--kl_direction gen||ref --event_threshold 0.4")
scoring_opts=
# stage 8: generations per test set drawn as spectrograms in results_images/ and copied to results_samples/
num_result_samples=3
# stage 8: directory RESULTS.md, results_images/ and results_samples/ are written to (a second profile of
# the same recipe keeps its own, e.g. run_quick.sh's results_quick)
results_dir=.
# </options>

cmdline="$0 $*"
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./cmd.sh
__po_positional=""
# shellcheck disable=SC1091
. utils/parse_options.sh
[ $# -eq 0 ] || die "unexpected arguments: $* (all options are --name value; see --help)"

# ---- validate options before any work ----
for s in "${stage}" "${stop_stage}"; do
  [[ "${s}" =~ ^[1-8]$ ]] || die "stages are numbered 1..8, got '${s}'"
done
[ "${stage}" -le "${stop_stage}" ] || die "--stage ${stage} is after --stop_stage ${stop_stage}"
if [ "${stop_stage}" -gt "${last_implemented_stage}" ]; then
  die "stage $((last_implemented_stage + 1)) and later are not implemented in this version of ualm_tk" \
      "(implemented: 1..${last_implemented_stage}); run with --stop_stage ${last_implemented_stage} or less"
fi
[ "${nj}" -ge 1 ] || die "--nj must be >= 1, got ${nj}"
case "${audio_channels}" in mono|keep) ;; *) die "--audio_channels must be mono or keep, got '${audio_channels}'" ;; esac
case "${audio_format}" in wav|flac) ;; *) die "--audio_format must be wav or flac, got '${audio_format}'" ;; esac
[ -n "${train_set}" ] && [ -n "${valid_set}" ] && [ -n "${test_sets}" ] || die "set names must not be empty"
if [ "${stage}" -le 1 ] && [ ! -x local/data.sh ]; then
  die "local/data.sh is missing or not executable in $(pwd): every recipe provides its own (see egs2/TEMPLATE/ualm1/setup.sh)"
fi
all_sets="${train_set} ${valid_set} ${test_sets}"
if [ -n "${codec_dir}" ]; then
  [ -f "${codec_dir}/component.yaml" ] || die "--codec_dir ${codec_dir}: no component.yaml there (not a saved codec)"
else
  if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    [ -f "${codec_config}" ] || die "--codec_config ${codec_config}: no such file"
  fi
  [ -n "${codec_tag}" ] || codec_tag=$(basename "${codec_config}" .yaml)
  codec_dir="${expdir}/codec_${codec_tag}/codec"
fi
if [ -n "${vae_dir}" ]; then
  [ -f "${vae_dir}/component.yaml" ] || die "--vae_dir ${vae_dir}: no component.yaml there (not a saved VAE)"
elif [ -n "${vae_config}" ]; then
  if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    [ -f "${vae_config}" ] || die "--vae_config ${vae_config}: no such file"
  fi
  [ -n "${vae_tag}" ] || vae_tag=$(basename "${vae_config}" .yaml)
fi
first_test_set=${test_sets%% *}
known_tasks="caption_to_audio audio_to_caption audio_qa audio_qa_dialog text_only"
for t in ${tasks}; do
  [[ " ${known_tasks} " == *" ${t} "* ]] || die "--tasks: unknown task '${t}' (known: ${known_tasks})"
done
# stage 5 options
[ -n "${lm_valid_set}" ] || lm_valid_set=${valid_set}
[ -n "${lm_tag}" ] || lm_tag=$(basename "${lm_config}" .yaml)
lm_exp="${expdir}/ualm_${lm_tag}"
[ -n "${lm_train_tasks}" ] || die "--lm_train_tasks must name at least one task"
for t in ${lm_train_tasks}; do
  [[ " ${known_tasks} " == *" ${t} "* ]] || die "--lm_train_tasks: unknown task '${t}' (known: ${known_tasks})"
done
[ "${ngpu}" -ge 0 ] || die "--ngpu must be >= 0, got ${ngpu}"
[ "${num_nodes}" -ge 1 ] || die "--num_nodes must be >= 1, got ${num_nodes}"
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
  [ -f "${lm_config}" ] || die "--lm_config ${lm_config}: no such file"
  [ -z "${lm_encoder_pretrain_config}" ] || [ -f "${lm_encoder_pretrain_config}" ] \
    || die "--lm_encoder_pretrain_config ${lm_encoder_pretrain_config}: no such file"
  [[ "${lm_text_pretrain_epochs}" =~ ^[0-9]+$ ]] \
    || die "--lm_text_pretrain_epochs must be a whole number of epochs (0: none), got '${lm_text_pretrain_epochs}'"
  if [ "${num_nodes}" -gt 1 ] && [ "${cmd_backend}" != slurm ]; then
    die "--num_nodes ${num_nodes} needs the slurm backend (UALM_CMD_BACKEND=slurm or cmd_backend=slurm in cmd.sh): the local backend runs on one machine"
  fi
fi
# stage 7 options
for t in ${decode_tasks}; do
  case "${t}" in caption_to_audio|audio_to_caption|audio_qa|text_only) ;;
    *) die "--decode_tasks: cannot decode task '${t}' (decodable: caption_to_audio audio_to_caption audio_qa text_only)" ;;
  esac
done
[ "${inference_nj}" -ge 1 ] || die "--inference_nj must be >= 1, got ${inference_nj}"
case "${inference_ngpu}" in 0|1) ;; *) die "--inference_ngpu must be 0 or 1 (one GPU per decoding job), got ${inference_ngpu}" ;; esac
[ "${top_k}" -ge 1 ] || die "--top_k must be >= 1, got ${top_k}"
# the models stage 7 decodes and stage 8 scores: --inference_model alone, else the stage-5 model
# (and the stage-6 model, added at stage 7/8 when its .done exists)
inference_model_given=${inference_model}
[ -n "${inference_model}" ] || inference_model=${lm_exp}
if [ -z "${inference_tag}" ]; then
  inference_tag="cfg${guidance_scale}_topk${top_k}_temp${temperature}"
  [ "${inference_seed}" -eq 0 ] || inference_tag+="_seed${inference_seed}"
  # shellcheck disable=SC2001
  [ -z "${inference_opts}" ] || inference_tag+="$(echo "${inference_opts}" | sed -e 's/--/_/g' -e 's/[ =]//g')"
fi
decode_root="${inference_model}/decode_${inference_tag}"
# stage 8 options
template_dir=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
[ -n "${scorer_configs}" ] || scorer_configs="${template_dir}/conf/scorer/tagger.yaml ${template_dir}/conf/scorer/clap_mini.yaml"
[ -n "${scorer_train_sets}" ] || scorer_train_sets=${train_set}
[[ "${num_result_samples}" =~ ^[1-9][0-9]*$ ]] || die "--num_result_samples must be >= 1, got '${num_result_samples}'"
# (the evaluators score stage 8 and give stage 6 its reward)
if { [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; } || { [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; }; then
  if [ -n "${scorer_dirs}" ]; then
    for d in ${scorer_dirs}; do
      [ -f "${d}/component.yaml" ] || die "--scorer_dirs: ${d} has no component.yaml (not a trained scorer)"
    done
  else
    for c in ${scorer_configs}; do
      [ -f "${c}" ] || die "--scorer_configs: ${c}: no such file"
    done
  fi
fi
# stage 6 options
[ -n "${dpo_tag}" ] || dpo_tag=${lm_tag}
dpo_exp="${expdir}/ualm_dpo_${dpo_tag}"
[ -n "${dpo_nj}" ] || dpo_nj=${inference_nj}
[[ "${dpo_nj}" =~ ^[1-9][0-9]*$ ]] || die "--dpo_nj must be >= 1, got '${dpo_nj}'"
[ "${dpo_num_prompts}" -ge 1 ] || die "--dpo_num_prompts must be >= 1, got ${dpo_num_prompts}"
[ "${dpo_valid_prompts}" -ge 1 ] || die "--dpo_valid_prompts must be >= 1, got ${dpo_valid_prompts}"
[ "${dpo_num_samples}" -ge 2 ] || die "--dpo_num_samples must be >= 2 (a pair needs two candidates), got ${dpo_num_samples}"
[[ "${dpo_min_gap}" != -* ]] || die "--dpo_min_gap must be >= 0, got ${dpo_min_gap}"
if [ -z "${dpo_config}" ]; then
  dpo_config=conf/train_ualm_dpo.yaml
  [ -f "${dpo_config}" ] || dpo_config="${template_dir}/conf/train_ualm_dpo.yaml"
fi
if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
  [ -f "${dpo_config}" ] || die "--dpo_config ${dpo_config}: no such file"
  [ "${dpo_exp}" != "${lm_exp}" ] || die "--dpo_tag: the DPO experiment ${dpo_exp} would overwrite the stage-5 model"
fi
# the enhancement VAE used at inference: --vae_dir, else the one stage 3 trains, else none
if [ -n "${vae_dir}" ]; then
  infer_vae_dir=${vae_dir}
elif [ -n "${vae_config}" ]; then
  infer_vae_dir="${expdir}/vae_${vae_tag}/vae"
else
  infer_vae_dir=
fi
# GPU jobs go through ${cuda_cmd} when cmd.sh defines it, else through ${train_cmd}
cuda_cmd=${cuda_cmd:-${train_cmd}}
# the sampling jobs of stages 6 and 7: one GPU each with --inference_ngpu 1, else CPU
if [ "${inference_ngpu}" -eq 1 ]; then
  decode_job=("${cuda_cmd}" --gpu 1)
  device=cuda
else
  decode_job=("${decode_cmd}")
  device=cpu
fi

# ---- helpers ----
# component_sum <dir>: checksum of a component dir's component.yaml + model.pth (empty input when absent)
component_sum() {
  cat "$1"/component.yaml "$1"/model.pth 2>/dev/null | cksum | cut -d' ' -f1
}

# files_sum <dir>: checksum of every file under <dir> (links followed; Python's bytecode caches and Markdown
# documentation left out), in byte order of their paths: a stage's signature covers the code or data it reads,
# not only its options
files_sum() {
  find -L "$1" -type f ! -name '*.pyc' ! -name '*.md' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z \
    | xargs -0 -r cat | cksum | cut -d' ' -f1
}

# stage_clock <n> | stage_clock "": stops the clock of the stage running now, if any (its wall time goes to the
# log summary and to ${expdir}/stage_times.tsv: one row per finished stage, start time, stage, seconds; a stage
# that dies leaves no row, a resumed one counts this run's part only, a dry run none), then starts stage <n>'s
clock_stage= clock_start= clock_started= run_times=
stage_clock() {
  local now secs
  now=$(date +%s)
  if [ -n "${clock_stage}" ] && [ "${lm_dry_run}" != true ]; then
    secs=$(( now - clock_start ))
    mkdir -p "${expdir}"
    [ -s "${expdir}/stage_times.tsv" ] || printf 'started\tstage\tseconds\n' > "${expdir}/stage_times.tsv"
    printf '%s\t%s\t%d\n' "${clock_started}" "${clock_stage}" "${secs}" >> "${expdir}/stage_times.tsv"
    run_times+="${run_times:+, }${clock_stage}: $(awk -v s="${secs}" 'BEGIN { printf "%.1f min", s / 60 }')"
  fi
  clock_stage=$1 clock_start=${now} clock_started=$(date '+%Y-%m-%dT%H:%M:%S')
}

# stage_is_done <done-file> <signature> [hint]: 0 when outputs exist for the same options
# (skip), 1 when the stage must run. Outputs made with other options are an error unless --force
# (the hint, when given, is added to that error: another way out than --force).
stage_is_done() {
  local done_file=$1 signature=$2 hint=${3:-}
  [ -f "${done_file}" ] || return 1
  if [ "${force}" = true ]; then
    rm -f "${done_file}"
    return 1
  fi
  if [ "$(cat "${done_file}")" != "${signature}" ]; then
    die "${done_file} was made with other options:" $'\n' "  then: $(cat "${done_file}")" $'\n' \
        "  now:  ${signature}" $'\n' "  pass --force true to redo it, or restore the options${hint:+; ${hint}}"
  fi
  return 0
}

# show_failed_logs <logdir>: print the tail of every job log that did not end with code 0.
show_failed_logs() {
  local logdir=$1 f shown=0
  for f in "${logdir}"/*.log; do
    [ -f "${f}" ] || continue
    if ! grep -q '^# Ended (code 0)' "${f}"; then
      echo "----- failing job log: ${f} (last 40 lines) -----" >&2
      tail -n 40 "${f}" >&2
      shown=$((shown + 1))
      [ "${shown}" -lt 3 ] || { echo "(more failing logs in ${logdir})" >&2; break; }
    fi
  done
}

# run_jobs <cmd> <logdir> <cmd args...>: run through the job backend; on failure show logs and die.
run_jobs() {
  local jobcmd=$1 logdir=$2
  shift 2
  mkdir -p "${logdir}"
  # shellcheck disable=SC2086
  if ! ${jobcmd} "$@"; then
    show_failed_logs "${logdir}"
    die "a job failed; logs are in ${logdir}"
  fi
}

# decode_shards <model dir> <data.json> <out dir> <nj> [lm_decode options...]: python -m ualm_tk.bin.lm_decode as
# a JOB=1:<nj> array on ${device} (options are joined by the job backend, so one word may hold several), then
# the shards merged into <out dir> (text, thinking, codes.scp, wav.scp, ...)
decode_shards() {
  local model=$1 json=$2 dir=$3 nj=$4
  shift 4
  run_jobs "${decode_job[*]}" "${dir}/log" JOB=1:"${nj}" "${dir}/log/decode.JOB.log" \
    python -m ualm_tk.bin.lm_decode --model_dir "${model}" --data_json "${json}" \
      --output_dir "${dir}/output.JOB" --nj "${nj}" --job JOB --device "${device}" "$@"
  python -m ualm_tk.bin.lm_decode_merge --output_dir "${dir}" --nj "${nj}" \
    || die "merging the shards of ${dir} failed (see above)"
}

# set_single_job: one_job (the job backend's command words) and one_ngpu (--ngpu of the trainer) for a training
# that runs as one process: on one GPU with --ngpu >= 1, else on --lm_num_threads CPUs (0: every CPU it may use)
set_single_job() {
  if [ "${ngpu}" -ge 1 ]; then
    one_job=("${cuda_cmd}" --gpu 1)
    one_ngpu=1
  else
    local n=${lm_num_threads}
    [ "${n}" -gt 0 ] || n=$(python -c 'import os; print(len(os.sched_getaffinity(0)))')
    one_job=("${train_cmd}" --num_threads "${n}")
    one_ngpu=0
  fi
}

# start_training_dir <stage> <dir>: makes <dir>/log; under --force removes the checkpoint (training from
# scratch); keeps the train.log of an earlier (killed or failed) run in <dir>/log/
start_training_dir() {
  local n=$1 out=$2
  mkdir -p "${out}/log"
  if [ "${force}" = true ] && [ -f "${out}/checkpoint.pth" ]; then
    log "Stage ${n}: --force true: training ${out} from scratch (removing its checkpoint.pth)"
    rm -f "${out}/checkpoint.pth"
  fi
  if [ -f "${out}/train.log" ]; then
    mv "${out}/train.log" "${out}/log/train.$(date +%Y%m%dT%H%M%S).log"
  fi
}

# watch_train_log <log>: echoes the epoch lines of a training log while its job runs, in the background
# (sets watcher; tail stops with this script at the latest)
watch_train_log() {
  tail -n +1 -F --pid=$$ "$1" 2>/dev/null \
    > >(grep --line-buffered -E 'epoch started|epoch results|was resumed|finished at' \
        | sed -u -E 's/^(.{200}).+/\1 .../; s/^/    train.log: /') &
  watcher=$!
}

# prepare_evaluators <stage>: sets eval_scorers to the evaluator dirs of stages 6 (reward) and 8 (metrics):
# --scorer_dirs, else one exp/scorer_<config name> per --scorer_configs, trained here unless done
# (an audio tagger and a text-audio contrastive model, each with its own accuracy on the first test set).
prepare_evaluators() {
  local n=$1 tagger_dir= sc_data=() sc_audio=() sc_valid=() s conf sdir kind init_opt sig
  if [ -n "${scorer_dirs}" ]; then
    log "Stage ${n}: using the evaluator models ${scorer_dirs}; evaluator training skipped"
    eval_scorers=${scorer_dirs}
    return 0
  fi
  eval_scorers=
  for s in ${scorer_train_sets}; do
    [ -f "${dumpdir}/audio/${s}/wav.scp" ] || die "Stage ${n}: ${dumpdir}/audio/${s}/wav.scp is missing; run stage 2 first"
    sc_data+=("${dumpdir}/audio/${s}")
    sc_audio+=("${dumpdir}/audio/${s}")
    # the codec resynthesis of stage 3 as a second copy under the same labels: evaluators that judge
    # generated (codec) audio must work on codec audio
    if [ -f "${dumpdir}/vae/${s}/wav.scp" ]; then
      sc_data+=("${dumpdir}/audio/${s}")
      sc_audio+=("${dumpdir}/vae/${s}")
    fi
  done
  sc_valid=("${dumpdir}/audio/${valid_set}")
  [ ! -f "${dumpdir}/vae/${valid_set}/wav.scp" ] || sc_valid+=("${dumpdir}/vae/${valid_set}")
  for conf in ${scorer_configs}; do
    sdir="${expdir}/scorer_$(basename "${conf}" .yaml)"
    kind=$(python -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("scorer", ""))' "${conf}")
    init_opt=()
    # the contrastive model's audio tower starts from the tagger trained just before it
    [ "${kind}" = clap_mini ] && [ -n "${tagger_dir}" ] && init_opt=(--init_from "${tagger_dir}")
    sig="config=$(cksum < "${conf}" | cut -d' ' -f1) train=${scorer_train_sets} audio=${sc_audio[*]} valid=${sc_valid[*]} init=${init_opt[*]+${init_opt[*]}} opts=${scorer_train_opts}"
    if stage_is_done "${sdir}/.done" "${sig}"; then
      log "Stage ${n}: evaluator ${sdir} already done; --force true redoes it"
    else
      if [ -f "${sdir}/checkpoint.pth" ] && [ "${force}" = true ]; then
        rm -f "${sdir}/checkpoint.pth"
      fi
      log "Stage ${n}: ${stage_names[${n}]}: evaluator ${dumpdir}/audio/{${scorer_train_sets// /,}} -> ${sdir} (config ${conf})"
      # shellcheck disable=SC2086
      run_jobs "${train_cmd}" "${sdir}/log" "${sdir}/log/train.log" \
        python -m ualm_tk.bin.scorer_train --config "${conf}" --data_dirs "${sc_data[@]}" --audio_dirs "${sc_audio[@]}" \
          --valid_data_dir "${dumpdir}/audio/${valid_set}" --valid_audio_dir "${sc_valid[@]}" \
          --output_dir "${sdir}" "${init_opt[@]}" ${scorer_train_opts}
      run_jobs "${train_cmd}" "${sdir}/log" "${sdir}/log/evaluate_${first_test_set}.log" \
        python -m ualm_tk.bin.scorer_evaluate --scorer_dir "${sdir}" \
          --data_dir "${dumpdir}/audio/${first_test_set}" --audio_dir "${dumpdir}/audio/${first_test_set}" \
          --set_name "${first_test_set}"
      if [ -f "${dumpdir}/vae/${first_test_set}/wav.scp" ]; then
        run_jobs "${train_cmd}" "${sdir}/log" "${sdir}/log/evaluate_${first_test_set}_codec.log" \
          python -m ualm_tk.bin.scorer_evaluate --scorer_dir "${sdir}" \
            --data_dir "${dumpdir}/audio/${first_test_set}" --audio_dir "${dumpdir}/vae/${first_test_set}" \
            --set_name "${first_test_set}_codec"
      fi
      echo "${sig}" > "${sdir}/.done"
      log "Stage ${n}: evaluator ${sdir}: its own accuracy on ${first_test_set} is in ${sdir}/RESULTS.md"
    fi
    [ "${kind}" = tagger ] && tagger_dir=${sdir}
    eval_scorers+=" ${sdir}"
  done
}

# set_decode_models: the models stage 7 decodes and stage 8 scores, in decode_models: --inference_model
# alone, else the stage-5 model and, once stage 6 has finished (its .done), the DPO model too
set_decode_models() {
  if [ -n "${inference_model_given}" ]; then
    decode_models=("${inference_model_given}")
  else
    decode_models=("${lm_exp}")
    [ ! -f "${dpo_exp}/.done" ] || decode_models+=("${dpo_exp}")
  fi
}

log "${cmdline}"
log "stages ${stage}..${stop_stage}, backend ${cmd_backend}, nj ${nj}"

# ---- stage 1: data preparation ----
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  stage_clock 1
  # the corpus code in local/ counts: a changed generator (new text problems, captions, ...) is not "done"
  sig="local/data.sh --data_dir ${datadir} --nj ${nj} ${local_data_opts} local=$(files_sum local)"
  if stage_is_done "${datadir}/.done.stage1" "${sig}"; then
    log "Stage 1: ${stage_names[1]}: already done (${datadir}/.done.stage1); --force true redoes it"
  else
    log "Stage 1: ${stage_names[1]}: local/data.sh -> ${datadir}/{${all_sets// /,}}"
    # shellcheck disable=SC2086
    run_jobs "${data_cmd}" "${datadir}/log" "${datadir}/log/data.log" \
      local/data.sh --data_dir "${datadir}" --nj "${nj}" ${local_data_opts}
    for s in ${all_sets}; do
      [ -d "${datadir}/${s}" ] || die "local/data.sh finished but ${datadir}/${s} is missing"
      python -m ualm_tk.bin.validate_data_dir "${datadir}/${s}" \
        || die "local/data.sh wrote an invalid data dir ${datadir}/${s} (see above)"
    done
    echo "${sig}" > "${datadir}/.done.stage1"
    log "Stage 1: done"
  fi
fi

# ---- stage 2: audio formatting and validation ----
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
  stage_clock 2
  for s in ${all_sets}; do
    src="${datadir}/${s}"
    dst="${dumpdir}/audio/${s}"
    [ -f "${src}/wav.scp" ] || die "Stage 2: ${src}/wav.scp is missing; run stage 1 first"
    # every file of the data dir counts (stage 2 copies captions, QA and text problems beside the audio)
    sig="fs=${fs} channels=${audio_channels} format=${audio_format} min_dur=${min_dur} max_dur=${max_dur} silence_db=${silence_db} src=$(files_sum "${src}")"
    if stage_is_done "${dst}/.done" "${sig}"; then
      log "Stage 2: ${stage_names[2]}: ${dst} already done; --force true redoes it"
      continue
    fi
    log "Stage 2: ${stage_names[2]}: ${src} -> ${dst} (${fs} Hz, ${audio_channels}, ${nj} jobs)"
    python -m ualm_tk.bin.validate_data_dir "${src}" || die "Stage 2: ${src} is not a valid data dir (see above)"
    n_utt=$(wc -l < "${src}/wav.scp")
    _nj=$(( nj < n_utt ? nj : n_utt ))
    split_dir="${dst}/split${_nj}"
    mkdir -p "${split_dir}"
    python -m ualm_tk.bin.split_scp "${src}/wav.scp" "${split_dir}" "${_nj}"
    run_jobs "${data_cmd}" "${dst}/log" JOB=1:"${_nj}" "${dst}/log/format.JOB.log" \
      python -m ualm_tk.bin.format_audio --wav_scp "${split_dir}/wav.JOB.scp" \
        --out_dir "${dst}/data/format.JOB" --fs "${fs}" --channels "${audio_channels}" \
        --audio_format "${audio_format}" --min_dur "${min_dur}" --max_dur "${max_dur}" \
        --silence_db "${silence_db}"
    parts=()
    for j in $(seq 1 "${_nj}"); do parts+=("${dst}/data/format.${j}"); done
    python -m ualm_tk.bin.merge_audio_dump --data_dir "${src}" --parts "${parts[@]}" --out_dir "${dst}"
    n_rej=$(wc -l < "${dst}/rejected")
    if python -c "import sys; sys.exit(0 if ${n_rej} <= ${max_reject_share} * ${n_utt} else 1)"; then
      [ "${n_rej}" -eq 0 ] || log "Stage 2: ${n_rej} of ${n_utt} clips of ${s} rejected; reasons in ${dst}/rejected_report.md"
    else
      die "Stage 2: ${n_rej} of ${n_utt} clips of ${s} rejected (more than --max_reject_share ${max_reject_share}); see ${dst}/rejected_report.md"
    fi
    echo "${sig}" > "${dst}/.done"
  done
  log "Stage 2: done"
fi

# ---- stage 3: codec (and enhancement VAE) training ----
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
  stage_clock 3
  if [ "${codec_dir}" != "${expdir}/codec_${codec_tag}/codec" ]; then
    log "Stage 3: ${stage_names[3]}: using the trained codec in ${codec_dir}; codec training skipped"
  else
    codec_exp="${expdir}/codec_${codec_tag}"
    sig="config=$(cksum < "${codec_config}" | cut -d' ' -f1) train=${train_set} valid=${valid_set} opts=${codec_train_opts}"
    if stage_is_done "${codec_exp}/.done" "${sig}"; then
      log "Stage 3: codec: ${codec_exp} already done; --force true redoes it"
    else
      log "Stage 3: ${stage_names[3]}: ${dumpdir}/audio/${train_set} -> ${codec_exp} (config ${codec_config})"
      # shellcheck disable=SC2086
      run_jobs "${train_cmd}" "${codec_exp}/log" "${codec_exp}/log/train.log" \
        python -m ualm_tk.bin.codec_train --config "${codec_config}" \
          --train_dir "${dumpdir}/audio/${train_set}" --valid_dir "${dumpdir}/audio/${valid_set}" \
          --exp_dir "${codec_exp}" --resume true ${codec_train_opts}
      log "Stage 3: codec: evaluating on ${dumpdir}/audio/${first_test_set} -> ${codec_exp}/eval_${first_test_set}"
      run_jobs "${train_cmd}" "${codec_exp}/log" "${codec_exp}/log/eval_${first_test_set}.log" \
        python -m ualm_tk.bin.codec_evaluate --codec_dir "${codec_dir}" \
          --wav_scp "${dumpdir}/audio/${first_test_set}/wav.scp" --out_dir "${codec_exp}/eval_${first_test_set}"
      echo "${sig}" > "${codec_exp}/.done"
      log "Stage 3: codec: done; loss curves in ${codec_exp}/images, quality table in ${codec_exp}/eval_${first_test_set}/RESULTS.md"
    fi
  fi

  if [ -n "${vae_dir}" ]; then
    log "Stage 3: VAE: using the trained VAE in ${vae_dir}; VAE training skipped"
  elif [ -z "${vae_config}" ]; then
    log "Stage 3: VAE: --vae_config is empty; no enhancement VAE"
  else
    vae_exp="${expdir}/vae_${vae_tag}"
    codec_sig=$(component_sum "${codec_dir}")
    sig="config=$(cksum < "${vae_config}" | cut -d' ' -f1) codec=${codec_dir} codec_sum=${codec_sig} train=${train_set} valid=${valid_set} opts=${vae_train_opts}"
    if stage_is_done "${vae_exp}/.done" "${sig}"; then
      log "Stage 3: VAE: ${vae_exp} already done; --force true redoes it"
    else
      # training pairs: input = the codec's resynthesis of each master, target = the master itself
      for s in ${train_set} ${valid_set} ${first_test_set}; do
        src="${dumpdir}/audio/${s}"
        dst="${dumpdir}/vae/${s}"
        log "Stage 3: VAE pairs: ${src}/master.scp -> ${dst} (codec resynthesis, ${nj} jobs)"
        n_utt=$(wc -l < "${src}/master.scp")
        _nj=$(( nj < n_utt ? nj : n_utt ))
        mkdir -p "${dst}/split${_nj}"
        python -m ualm_tk.bin.split_scp "${src}/master.scp" "${dst}/split${_nj}" "${_nj}"
        run_jobs "${data_cmd}" "${dst}/log" JOB=1:"${_nj}" "${dst}/log/resynth.JOB.log" \
          python -m ualm_tk.bin.codec_resynth --codec_dir "${codec_dir}" --resample true \
            --wav_scp "${dst}/split${_nj}/master.JOB.scp" --out_dir "${dst}/split${_nj}/JOB"
        for j in $(seq 1 "${_nj}"); do cat "${dst}/split${_nj}/${j}/wav.scp"; done | sort > "${dst}/wav.scp"
        [ "$(wc -l < "${dst}/wav.scp")" -eq "${n_utt}" ] || die "Stage 3: ${dst}/wav.scp is incomplete"
      done
      log "Stage 3: ${stage_names[3]}: ${dumpdir}/vae/${train_set} + masters -> ${vae_exp} (config ${vae_config})"
      # shellcheck disable=SC2086
      run_jobs "${train_cmd}" "${vae_exp}/log" "${vae_exp}/log/train.log" \
        python -m ualm_tk.bin.vae_train --config "${vae_config}" --output_dir "${vae_exp}" --resume true \
          --train_data_path_and_name_and_type "${dumpdir}/vae/${train_set}/wav.scp,wav_lo,sound" \
          --train_data_path_and_name_and_type "${dumpdir}/audio/${train_set}/master.scp,wav_hi,sound" \
          --valid_data_path_and_name_and_type "${dumpdir}/vae/${valid_set}/wav.scp,wav_lo,sound" \
          --valid_data_path_and_name_and_type "${dumpdir}/audio/${valid_set}/master.scp,wav_hi,sound" \
          --train_shape_file "${dumpdir}/vae/${train_set}/wav.scp" \
          --valid_shape_file "${dumpdir}/vae/${valid_set}/wav.scp" ${vae_train_opts}
      python -m ualm_tk.bin.vae_export --exp_dir "${vae_exp}" --out_dir "${vae_exp}/vae"
      log "Stage 3: VAE: evaluating on ${first_test_set} -> ${vae_exp}/eval_${first_test_set}"
      run_jobs "${train_cmd}" "${vae_exp}/log" "${vae_exp}/log/eval_${first_test_set}.log" \
        python -m ualm_tk.bin.vae_evaluate --vae_dir "${vae_exp}/vae" \
          --wav_lo_scp "${dumpdir}/vae/${first_test_set}/wav.scp" \
          --ref_scp "${dumpdir}/audio/${first_test_set}/master.scp" \
          --out_dir "${vae_exp}/eval_${first_test_set}" --num_plots 4
      echo "${sig}" > "${vae_exp}/.done"
      log "Stage 3: VAE: done; loss curves in ${vae_exp}/images, quality table in ${vae_exp}/eval_${first_test_set}/RESULTS.md"
    fi
  fi
fi

# ---- stage 4: tokenisation ----
if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
  stage_clock 4
  [ -f "${codec_dir}/component.yaml" ] || die "Stage 4: no trained codec in ${codec_dir}; run stage 3 first or pass --codec_dir"
  codec_sig=$(component_sum "${codec_dir}")
  # 4a: codec codes, one JOB array per set
  for s in ${all_sets}; do
    src="${dumpdir}/audio/${s}"
    dst="${dumpdir}/codes/${s}"
    [ -f "${src}/wav.scp" ] || die "Stage 4: ${src}/wav.scp is missing; run stage 2 first"
    sig="codec=${codec_dir} codec_sum=${codec_sig} src=$(cksum < "${src}/wav.scp" | cut -d' ' -f1)"
    if stage_is_done "${dst}/.done" "${sig}"; then
      log "Stage 4: codes: ${dst} already done; --force true redoes it"
      continue
    fi
    log "Stage 4: ${stage_names[4]}: ${src} -> ${dst} (codec ${codec_dir}, ${nj} jobs)"
    n_utt=$(wc -l < "${src}/wav.scp")
    _nj=$(( nj < n_utt ? nj : n_utt ))
    split_dir="${dst}/split${_nj}"
    mkdir -p "${split_dir}"
    python -m ualm_tk.bin.split_scp "${src}/wav.scp" "${split_dir}" "${_nj}"
    run_jobs "${data_cmd}" "${dst}/log" JOB=1:"${_nj}" "${dst}/log/tokenize.JOB.log" \
      python -m ualm_tk.bin.codec_tokenize --codec_dir "${codec_dir}" \
        --wav_scp "${split_dir}/wav.JOB.scp" --out_dir "${split_dir}/JOB"
    for f in codes.scp utt2num_frames; do
      for j in $(seq 1 "${_nj}"); do cat "${split_dir}/${j}/${f}"; done | sort > "${dst}/${f}"
      [ "$(wc -l < "${dst}/${f}")" -eq "${n_utt}" ] \
        || die "Stage 4: ${dst}/${f} has $(wc -l < "${dst}/${f}") lines, ${src}/wav.scp ${n_utt}: a shard is incomplete"
    done
    # every shard's info is the same codec geometry; the utterance count is the merged set's
    python -c 'import json,sys; d=json.load(open(sys.argv[1])); d["num_utterances"]=int(sys.argv[3]); open(sys.argv[2],"w").write(json.dumps(d, indent=2, sort_keys=True) + "\n")' \
      "${split_dir}/1/codes_info.json" "${dst}/codes_info.json" "${n_utt}"
    echo "${sig}" > "${dst}/.done"
  done

  # 4b: text tokeniser and token layout (specials | text | K audio streams), written once
  token_dir="${datadir}/token_list"
  # the BPE learns from every text of the training set: captions, questions, answers, worked solutions
  bpe_inputs=()
  for f in text qa/question qa/answer text_only/question text_only/answer text_only/solution; do
    [ -f "${datadir}/${train_set}/${f}" ] && bpe_inputs+=("${datadir}/${train_set}/${f}")
  done
  sig="bpe=${bpe_vocab_size} codec_info=$(cksum < "${dumpdir}/codes/${train_set}/codes_info.json" | cut -d' ' -f1) train=$(cat "${bpe_inputs[@]}" | cksum | cut -d' ' -f1)"
  if stage_is_done "${token_dir}/.done" "${sig}"; then
    log "Stage 4: token list: ${token_dir} already done; --force true redoes it"
  else
    log "Stage 4: ${stage_names[4]}: ${datadir}/${train_set} text -> ${token_dir} (BPE ${bpe_vocab_size})"
    python -m ualm_tk.bin.train_bpe --input "${bpe_inputs[@]}" --vocab_size "${bpe_vocab_size}" \
      --out_dir "${token_dir}/bpe"
    read -r n_codebooks codebook_size < <(python -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["num_codebooks"], d["codebook_size"])' "${dumpdir}/codes/${train_set}/codes_info.json")
    python -m ualm_tk.bin.make_token_list --bpe_model "${token_dir}/bpe/bpe.model" \
      --num_codebooks "${n_codebooks}" --codebook_size "${codebook_size}" --out_dir "${token_dir}" --overwrite true
    echo "${sig}" > "${token_dir}/.done"
  fi

  # 4c: one data.json per task and set
  for s in ${all_sets}; do
    for t in ${tasks}; do
      out="${dumpdir}/${t}/${s}/data.json"
      sig="token_list=$(cksum < "${token_dir}/token_list" | cut -d' ' -f1) codes=$(cksum < "${dumpdir}/codes/${s}/codes.scp" | cut -d' ' -f1) opts=${task_data_opts}"
      if stage_is_done "${out}.done" "${sig}"; then
        continue
      fi
      log "Stage 4: ${stage_names[4]}: ${dumpdir}/audio/${s} -> ${out}"
      codes_opt=()
      [ "${t}" = caption_to_audio ] && codes_opt=(--codes_scp "${dumpdir}/codes/${s}/codes.scp")
      # shellcheck disable=SC2086
      python -m ualm_tk.bin.make_task_data --task "${t}" --data_dir "${dumpdir}/audio/${s}" \
        "${codes_opt[@]}" --fs "${fs}" --token_dir "${token_dir}" --out "${out}" ${task_data_opts}
      echo "${sig}" > "${out}.done"
    done
  done
  log "Stage 4: done"
fi

# ---- stage 5: LM training ----
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
  stage_clock 5
  token_dir="${datadir}/token_list"
  [ -f "${token_dir}/token_list" ] || die "Stage 5: ${token_dir}/token_list is missing; run stage 4 first"
  data_args=()
  data_jsons=()
  for t in ${lm_train_tasks}; do
    for pair in "train:${train_set}" "valid:${lm_valid_set}"; do
      json="${dumpdir}/${t}/${pair#*:}/data.json"
      [ -f "${json}" ] || die "Stage 5: ${json} is missing; run stage 4 with --tasks including ${t}" \
        "(tasks now: ${tasks}) or drop ${t} from --lm_train_tasks"
      data_args+=("--${pair%%:*}_data_path_and_name_and_type" "${json},${t},data_json")
      data_jsons+=("${json}")
    done
  done
  # 5a: the audio encoder pre-trained on the categorical question labels of the train set
  init_params=()  # ESPnet's --init_param takes every value after ONE flag (nargs=*): a second flag would replace the first
  enc_sum=
  if [ -n "${lm_encoder_pretrain_config}" ]; then
    enc_exp="${expdir}/audio_encoder_${lm_tag}"
    [ -f "${datadir}/qtypes.json" ] || die "Stage 5: ${datadir}/qtypes.json is missing (stage 1 writes it): needed by --lm_encoder_pretrain_config"
    for s in ${train_set} ${valid_set}; do
      [ -f "${dumpdir}/audio/${s}/qa/qtype" ] || die "Stage 5: ${dumpdir}/audio/${s}/qa/qtype is missing; run stage 2 first"
    done
    # (only the encoder's own part of the LM config counts: its freeze flag and every other LM option do not)
    enc_arch=$(python -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])) or {}; c = dict(d.get("audio_encoder_conf") or {}); c.pop("freeze", None); print(d.get("audio_encoder"), sorted(c.items()))' "${lm_config}")
    enc_sig="config=$(cksum < "${lm_encoder_pretrain_config}" | cut -d' ' -f1) encoder=$(echo "${enc_arch}" | cksum | cut -d' ' -f1) train=${train_set} valid=${valid_set} qa=$(cat "${dumpdir}/audio/${train_set}/qa/answer" "${datadir}/qtypes.json" | cksum | cut -d' ' -f1)"
    if [ "${lm_dry_run}" = true ]; then
      log "Stage 5a: dry run: the audio encoder would be pre-trained into ${enc_exp}"
    elif stage_is_done "${enc_exp}/.done" "${enc_sig}"; then
      log "Stage 5a: audio encoder pre-training: ${enc_exp} already done; --force true redoes it"
    else
      if [ "${force}" = true ]; then rm -f "${enc_exp}/checkpoint.pth"; fi
      log "Stage 5a: audio encoder pre-training on the categorical question labels:" \
          "${dumpdir}/audio/${train_set} -> ${enc_exp} (config ${lm_encoder_pretrain_config}); progress: tail -f ${enc_exp}/log/pretrain.log"
      cpu_threads=${lm_num_threads}
      [ "${cpu_threads}" -gt 0 ] || cpu_threads=$(python -c 'import os; print(len(os.sched_getaffinity(0)))')
      run_jobs "${train_cmd}" "${enc_exp}/log" --num_threads "${cpu_threads}" "${enc_exp}/log/pretrain.log" \
        python -m ualm_tk.bin.audio_encoder_pretrain --lm_config "${lm_config}" --config "${lm_encoder_pretrain_config}" \
          --qtypes "${datadir}/qtypes.json" --train_dir "${dumpdir}/audio/${train_set}" \
          --valid_dir "${dumpdir}/audio/${valid_set}" --test_dir "${dumpdir}/audio/${first_test_set}" \
          --output_dir "${enc_exp}" --num_threads "${cpu_threads}"
      echo "${enc_sig}" > "${enc_exp}/.done"
      log "Stage 5a: done; accuracy per question type: ${enc_exp}/RESULTS.md"
    fi
    init_params+=("${enc_exp}/encoder/model.pth::audio_encoder")
    enc_sum=$(cksum 2>/dev/null < "${enc_exp}/encoder/model.pth" | cut -d' ' -f1 || true)
  fi
  # 5b: the decoder pre-trained on text_only alone (the worked solutions are learnt about twice as fast per
  # text step alone as inside the blend); its config is the LM config with text_only as the only task
  txt_sum=
  if [ "${lm_text_pretrain_epochs}" -gt 0 ]; then
    txt_exp="${expdir}/text_pretrain_${lm_tag}"
    txt_data=()
    for pair in "train:${train_set}" "valid:${lm_valid_set}"; do
      json="${dumpdir}/text_only/${pair#*:}/data.json"
      [ -f "${json}" ] || die "Stage 5b: ${json} is missing; run stage 4 with --tasks including text_only" \
        "(needed by --lm_text_pretrain_epochs ${lm_text_pretrain_epochs})"
      txt_data+=("--${pair%%:*}_data_path_and_name_and_type" "${json},text_only,data_json")
    done
    txt_conf=$(python -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1])) or {}
d["task_factors"] = {"text_only": 1.0}
d["max_epoch"] = int(sys.argv[2])
d.pop("init_param", None)
# codec-stream loss weights do not touch text-only training: trying other weights keeps this stage done
(d.get("data_conf") or {}).pop("audio_weight", None)
print(yaml.safe_dump(d, sort_keys=False), end="")' "${lm_config}" "${lm_text_pretrain_epochs}")
    # (text-only batches never reach the audio encoder: another encoder keeps this stage done; nor does key order)
    txt_sig_conf=$(echo "${txt_conf}" | python -c 'import sys, yaml
d = yaml.safe_load(sys.stdin)
for k in ("audio_encoder", "audio_encoder_conf"):
    d.pop(k, None)
print(yaml.safe_dump(d, sort_keys=True), end="")')
    txt_sig="config=$(echo "${txt_sig_conf}" | cksum | cut -d' ' -f1) data=$(cat "${dumpdir}/text_only/${train_set}/data.json" "${dumpdir}/text_only/${lm_valid_set}/data.json" | cksum | cut -d' ' -f1) token_list=$(cksum < "${token_dir}/token_list" | cut -d' ' -f1)"
    if [ "${lm_dry_run}" = true ]; then
      log "Stage 5b: dry run: the decoder would be pre-trained on text_only for ${lm_text_pretrain_epochs} epochs into ${txt_exp}"
    elif stage_is_done "${txt_exp}/.done" "${txt_sig}"; then
      log "Stage 5b: decoder text pre-training: ${txt_exp} already done; --force true redoes it"
    else
      start_training_dir 5b "${txt_exp}"
      echo "${txt_conf}" > "${txt_exp}/text_pretrain.yaml"
      log "Stage 5b: decoder pre-training on text_only alone (${lm_text_pretrain_epochs} epochs):" \
          "${dumpdir}/text_only/${train_set} -> ${txt_exp} (config ${txt_exp}/text_pretrain.yaml); progress: tail -f ${txt_exp}/train.log"
      [ ! -f "${txt_exp}/checkpoint.pth" ] || log "Stage 5b: resuming the interrupted training from ${txt_exp}/checkpoint.pth"
      set_single_job
      watch_train_log "${txt_exp}/train.log"
      run_jobs "${one_job[*]}" "${txt_exp}" "${txt_exp}/train.log" \
        python -m ualm_tk.tasks.ualm --config "${txt_exp}/text_pretrain.yaml" --token_dir "${token_dir}" \
          --output_dir "${txt_exp}" --resume true "${txt_data[@]}" --ngpu "${one_ngpu}"
      sleep 1
      kill "${watcher}" 2>/dev/null || true
      grep -q "The training was finished at" "${txt_exp}/train.log" \
        || die "Stage 5b: the text pre-training ended before its ${lm_text_pretrain_epochs} epochs (see ${txt_exp}/train.log)"
      [ -f "${txt_exp}/valid.loss.best.pth" ] || die "Stage 5b: ${txt_exp}/valid.loss.best.pth is missing after the training"
      # its exact match on the valid problems (greedy, thinking then answer), as stage 7 decodes
      txt_dec="${txt_exp}/decode_${lm_valid_set}"
      rm -rf "${txt_dec}"
      decode_shards "${txt_exp}" "${dumpdir}/text_only/${lm_valid_set}/data.json" "${txt_dec}" "${inference_nj}" \
        "${inference_opts}"
      qtypes_opt=()
      [ -f "${datadir}/qtypes.json" ] && qtypes_opt=(--qtypes "${datadir}/qtypes.json")
      python -m ualm_tk.bin.score_understanding --data_json "${dumpdir}/text_only/${lm_valid_set}/data.json" \
        --hyp "${txt_dec}/text" "${qtypes_opt[@]}" --output_dir "${txt_dec}" \
        || die "Stage 5b: scoring ${txt_dec}/text failed (see above)"
      echo "${txt_sig}" > "${txt_exp}/.done"
      log "Stage 5b: done; text_only exact match on ${lm_valid_set}: ${txt_dec}/scores_understanding.md"
    fi
    # decoder, embeddings, head and stream embeddings; the audio encoder and adapter come from 5a (or start fresh)
    init_params+=("${txt_exp}/valid.loss.best.pth:::audio_encoder,adapter")
    txt_sum=$(cksum 2>/dev/null < "${txt_exp}/valid.loss.best.pth" | cut -d' ' -f1 || true)
  fi
  sig="config=$(cksum < "${lm_config}" | cut -d' ' -f1) encoder=${enc_sum}${txt_sum:+ text=${txt_sum}} tasks=${lm_train_tasks} train=${train_set} valid=${lm_valid_set} data=$(cat "${data_jsons[@]}" | cksum | cut -d' ' -f1) token_list=$(cksum < "${token_dir}/token_list" | cut -d' ' -f1) opts=${lm_train_opts}"
  # the training command (its words are joined by the job backend and run by bash -c, so
  # --lm_train_opts keeps the user's own quoting, as in Kaldi)
  train_words=(python -m ualm_tk.tasks.ualm --config "${lm_config}" --token_dir "${token_dir}"
    --output_dir "${lm_exp}" --resume true "${data_args[@]}" ${init_params[@]+--init_param "${init_params[@]}"} --ngpu "${ngpu}")
  if [ "${num_nodes}" -gt 1 ]; then
    # one srun task per node; each spawns --ngpu processes (ESPnet's multiprocessing_distributed),
    # ranks from SLURM_PROCID/SLURM_NODEID, rendezvous through a file on the shared filesystem
    # (as espnet2/bin/launch.py does for slurm)
    init_file="$(cd "$(dirname "${lm_exp}")" && pwd)/$(basename "${lm_exp}")/.dist_init_$(date +%s%N)"
    nthreads=$(( ngpu > 1 ? ngpu : 1 ))
    job_opts=(--gpu "${ngpu}" --num_threads "${nthreads}" --num_nodes "${num_nodes}")
    # (srun >= 22.05 no longer inherits --cpus-per-task from the job: give it again)
    train_words=(srun --export=ALL --nodes "${num_nodes}" --ntasks-per-node 1 --cpus-per-task "${nthreads}" "${train_words[@]}"
      --multiprocessing_distributed true --dist_launcher slurm --dist_init_method "file://${init_file}")
    [ "${ngpu}" -gt 0 ] || train_words+=(--dist_backend gloo)
    job_cmd=${cuda_cmd}
  elif [ "${ngpu}" -gt 1 ]; then
    # one node, several GPUs: ESPnet spawns one DDP process per GPU (nccl, tcp://localhost:<free port>)
    job_opts=(--gpu "${ngpu}" --num_threads "${ngpu}")
    train_words+=(--multiprocessing_distributed true --dist_backend nccl)
    job_cmd=${cuda_cmd}
  elif [ "${ngpu}" -eq 1 ]; then
    job_opts=(--gpu 1)
    job_cmd=${cuda_cmd}
  else
    cpu_threads=${lm_num_threads}
    [ "${cpu_threads}" -gt 0 ] || cpu_threads=$(python -c 'import os; print(len(os.sched_getaffinity(0)))')
    job_opts=(--num_threads "${cpu_threads}")
    job_cmd=${train_cmd}
  fi
  [ -z "${lm_train_opts}" ] || train_words+=("${lm_train_opts}")
  if [ "${lm_dry_run}" = true ]; then
    log "Stage 5: dry run (ngpu ${ngpu}, num_nodes ${num_nodes}); the job would be:"
    echo "${job_cmd} ${job_opts[*]+${job_opts[*]}} ${lm_exp}/train.log ${train_words[*]}"
    log "Stage 5: dry run: nothing trained"
  elif stage_is_done "${lm_exp}/.done" "${sig}" \
      "to train longer (a larger max_epoch and, with a piecewise LR schedule, its last knot moved with it), remove ${lm_exp}/.done: the training resumes from its checkpoint.pth"; then
    log "Stage 5: ${stage_names[5]}: ${lm_exp} already done; --force true redoes it"
  else
    start_training_dir 5 "${lm_exp}"
    log "Stage 5: ${stage_names[5]}: ${dumpdir}/{${lm_train_tasks// /,}}/${train_set} -> ${lm_exp}" \
        "(config ${lm_config}, ngpu ${ngpu}, num_nodes ${num_nodes})"
    if [ -f "${lm_exp}/checkpoint.pth" ]; then
      log "Stage 5: resuming the interrupted training from ${lm_exp}/checkpoint.pth"
    fi
    log "Stage 5: progress: tail -f ${lm_exp}/train.log"
    watch_train_log "${lm_exp}/train.log"
    # shellcheck disable=SC2086
    run_jobs "${job_cmd}" "${lm_exp}" ${job_opts[@]+"${job_opts[@]}"} "${lm_exp}/train.log" "${train_words[@]}"
    sleep 1  # let the watcher print the last lines
    kill "${watcher}" 2>/dev/null || true
    if ! grep -q "The training was finished at" "${lm_exp}/train.log"; then
      tail -n 20 "${lm_exp}/train.log" >&2
      die "Stage 5: training ended before --max_epoch (early stopping or invalid gradients, see above):" \
          "${lm_exp} is not marked done"
    fi
    echo "${sig}" > "${lm_exp}/.done"
    log "Stage 5: done; model dir ${lm_exp} ($(grep -o 'The training was finished at [0-9]* epochs' "${lm_exp}/train.log" | tail -n 1))"
  fi
fi

# ---- stage 6: DPO ----
if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
  stage_clock 6
  [ -f "${lm_exp}/config.yaml" ] || die "Stage 6: ${lm_exp} has no config.yaml: run stage 5 first"
  [ -f "${lm_exp}/.done" ] || die "Stage 6: the training in ${lm_exp} has not finished (no .done from stage 5): finish stage 5 first"
  [ -f "${codec_dir}/component.yaml" ] || die "Stage 6: no trained codec in ${codec_dir}; run stage 3 first or pass --codec_dir"
  # 6a: the reward's evaluators: the same dirs as stage 8's (a later stage 8 finds them done)
  prepare_evaluators 6
  reward_words=$(python -c '
import sys, yaml
clap = tagger = thr = "-"
for d in sys.argv[1:]:
    doc = yaml.safe_load(open(d + "/component.yaml", encoding="utf-8")) or {}
    caps = (doc.get("meta") or {}).get("capabilities") or []
    if clap == "-" and "embed_text" in caps:
        clap = d
    if tagger == "-" and "frame_posteriors" in caps:
        tagger, thr = d, str((doc.get("conf") or {}).get("threshold", 0.5))
print(clap, tagger, thr)' ${eval_scorers}) || die "Stage 6: cannot read the evaluators' component.yaml (${eval_scorers})"
  read -r reward_clap reward_tagger reward_threshold <<< "${reward_words}"
  [ "${reward_clap}" != - ] || [ "${reward_tagger}" != - ] \
    || die "Stage 6: none of the evaluators (${eval_scorers}) gives a reward: it needs a text-audio model (embed_text) or a frame tagger"
  scorers_sum=$(for d in ${eval_scorers}; do cat "${d}/model.pth" 2>/dev/null; done | cksum | cut -d' ' -f1)
  codec_sum=$(component_sum "${codec_dir}")
  set_single_job  # DPO trains on one device (one GPU with --ngpu >= 1)
  dpo_job=("${one_job[@]}")
  dpo_ngpu=${one_ngpu}

  # dpo_candidates <model dir> <set> <number of prompts> <out dir>: --dpo_num_samples candidates per prompt
  # of dump/caption_to_audio/<set> (its first N keys), as a JOB array; the shards go to <out dir>/cands.JOB
  dpo_candidates() {
    local model=$1 set=$2 num=$3 cdir=$4 json model_sum sig n_ex _nj
    json="${dumpdir}/caption_to_audio/${set}/data.json"
    [ -f "${json}" ] || die "Stage 6: ${json} is missing; run stage 4 with --tasks including caption_to_audio"
    model_sum=$(stat -L -c '%n %s %Y' "${model}"/*.pth 2>/dev/null | cksum | cut -d' ' -f1)
    sig="model=${model} model_sum=${model_sum} data=$(cksum < "${json}" | cut -d' ' -f1) codec_sum=${codec_sum} prompts=${num} samples=${dpo_num_samples} cfg=${guidance_scale} top_k=${top_k} temperature=${temperature} seed=${inference_seed} opts=${dpo_sample_opts}"
    if stage_is_done "${cdir}/.done" "${sig}"; then
      log "Stage 6: candidates ${cdir} already done; --force true redoes it"
      return 0
    fi
    rm -rf "${cdir:?}"  # shards of an unfinished or differently split earlier run
    n_ex=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_examples"])' "${json}")
    [ "${n_ex}" -ge 2 ] || die "Stage 6: ${json} has ${n_ex} example(s); DPO needs prompts"
    [ "${num}" -le "${n_ex}" ] || num=${n_ex}
    _nj=$(( dpo_nj < num ? dpo_nj : num ))
    log "Stage 6: ${stage_names[6]}: ${json} (first ${num} prompts) -> ${cdir}" \
        "(${dpo_num_samples} candidates each from ${model}, ${_nj} jobs on ${device})"
    run_jobs "${decode_job[*]}" "${cdir}/log" JOB=1:"${_nj}" "${cdir}/log/sample.JOB.log" \
      python -m ualm_tk.bin.dpo_sample --model_dir "${model}" --data_json "${json}" --output_dir "${cdir}/cands.JOB" \
        --codec_dir "${codec_dir}" --num_samples "${dpo_num_samples}" --num_prompts "${num}" --nj "${_nj}" --job JOB \
        --guidance_scale "${guidance_scale}" --top_k "${top_k}" --temperature "${temperature}" \
        --seed "${inference_seed}" --device "${device}" "${dpo_sample_opts}"
    echo "${_nj}" > "${cdir}/num_jobs"
    echo "${sig}" > "${cdir}/.done"
  }

  # dpo_score <candidates dir> <set> <out dir> [dpo_pairs options]: the reward of every candidate, the
  # preference pairs (unless --score_only) and stats.json in <out dir>
  dpo_score() {
    local cdir=$1 set=$2 pdir=$3 json sig j cands=() reward_opts=()
    shift 3
    json="${dumpdir}/caption_to_audio/${set}/data.json"
    for j in $(seq 1 "$(cat "${cdir}/num_jobs")"); do cands+=("${cdir}/cands.${j}"); done
    [ "${reward_clap}" = - ] || reward_opts+=(--clap_dir "${reward_clap}")
    if [ "${reward_tagger}" != - ]; then
      if [ -f "${datadir}/${set}/metadata" ]; then
        reward_opts+=(--tagger_dir "${reward_tagger}" --metadata "${datadir}/${set}/metadata" --threshold "${reward_threshold}")
      elif [ "${reward_clap}" != - ]; then
        log "Stage 6: ${datadir}/${set}/metadata is missing: the reward has no event/order components"
      else
        die "Stage 6: the tagger ${reward_tagger} needs the events of ${datadir}/${set}/metadata, which is missing"
      fi
    fi
    sig="cands=$(cat "${cands[@]/%//codes.ark}" | cksum | cut -d' ' -f1) data=$(cksum < "${json}" | cut -d' ' -f1) reward=${reward_opts[*]} scorers_sum=${scorers_sum} min_gap=${dpo_min_gap} $* opts=${dpo_pairs_opts}"
    if stage_is_done "${pdir}/.done" "${sig}"; then
      log "Stage 6: rewards ${pdir} already done; --force true redoes it"
    else
      log "Stage 6: ${stage_names[6]}: ${cdir} -> ${pdir} (reward: ${reward_opts[*]})"
      # shellcheck disable=SC2086
      run_jobs "${decode_cmd}" "${pdir}/log" "${pdir}/log/pairs.log" \
        python -m ualm_tk.bin.dpo_pairs --candidates_dir "${cands[@]}" --data_json "${json}" --output_dir "${pdir}" \
          "${reward_opts[@]}" --min_gap "${dpo_min_gap}" "$@" ${dpo_pairs_opts}
      echo "${sig}" > "${pdir}/.done"
    fi
    python -c '
import json, sys
d = json.load(open(sys.argv[1]))
line = "{:.0f} candidates, mean reward {:.4f}, best of n {:.4f}".format(d["num_candidates"], d["mean_reward"], d["mean_best_of_n"])
c = d.get("counts")
if c:
    line = ("{pairs} pairs of {prompts} prompts (skipped: too_few {too_few}, tie {tie}, small_gap {small_gap}); ".format(**c)
            + line + "; chosen {:.4f}, rejected {:.4f}".format(d["mean_reward_chosen"], d["mean_reward_rejected"]))
print(line)' "${pdir}/stats.json" | sed "s|^|$(date '+%Y-%m-%dT%H:%M:%S') Stage 6: ${pdir}/stats.json: |"
  }

  # dpo_train <what> <out dir> <init model dir> <extra options string> [extra words]: one run of
  # ualm_tk.tasks.ualm_dpo on the pairs, resumable (--resume true), .done once "The training was finished"
  dpo_train() {
    local what=$1 out=$2 init=$3 opts=$4 init_sum sig words watcher
    shift 4
    init_sum=$(stat -L -c '%n %s %Y' "${init}"/*.pth 2>/dev/null | cksum | cut -d' ' -f1)
    sig="config=$(cksum < "${dpo_config}" | cut -d' ' -f1) init=${init} init_sum=${init_sum} pairs=$(cat "${dpo_exp}/pairs/train/pairs.json" "${dpo_exp}/pairs/valid/pairs.json" | cksum | cut -d' ' -f1) ngpu=${dpo_ngpu} $* opts=${opts}"
    if stage_is_done "${out}/.done" "${sig}"; then
      log "Stage 6: ${what}: ${out} already done; --force true redoes it"
      return 0
    fi
    start_training_dir 6 "${out}"
    log "Stage 6: ${stage_names[6]}: ${what}: ${dpo_exp}/pairs/{train,valid}/pairs.json -> ${out} (from ${init}, config ${dpo_config})"
    [ ! -f "${out}/checkpoint.pth" ] || log "Stage 6: resuming the interrupted training from ${out}/checkpoint.pth"
    log "Stage 6: progress: tail -f ${out}/train.log"
    words=(python -m ualm_tk.tasks.ualm_dpo --config "${dpo_config}" --init_model_dir "${init}" --output_dir "${out}"
      --resume true --ngpu "${dpo_ngpu}"
      --train_data_path_and_name_and_type "${dpo_exp}/pairs/train/pairs.json,dpo,dpo_pairs"
      --valid_data_path_and_name_and_type "${dpo_exp}/pairs/valid/pairs.json,dpo,dpo_pairs" "$@")
    [ -z "${opts}" ] || words+=("${opts}")
    watch_train_log "${out}/train.log"
    # shellcheck disable=SC2086
    run_jobs "${dpo_job[*]}" "${out}" "${out}/train.log" "${words[@]}"
    sleep 1  # let the watcher print the last lines
    kill "${watcher}" 2>/dev/null || true
    if ! grep -q "The training was finished at" "${out}/train.log"; then
      tail -n 20 "${out}/train.log" >&2
      die "Stage 6: ${what} ended before --max_epoch (early stopping or invalid gradients, see above): ${out} is not marked done"
    fi
    echo "${sig}" > "${out}/.done"
  }

  # 6b, 6c: candidates of the stage-5 model on the first train and valid prompts, rewards, pairs
  dpo_candidates "${lm_exp}" "${train_set}" "${dpo_num_prompts}" "${dpo_exp}/cands/train"
  dpo_candidates "${lm_exp}" "${valid_set}" "${dpo_valid_prompts}" "${dpo_exp}/cands/valid"
  dpo_score "${dpo_exp}/cands/train" "${train_set}" "${dpo_exp}/pairs/train"
  dpo_score "${dpo_exp}/cands/valid" "${valid_set}" "${dpo_exp}/pairs/valid"
  # 6d: CE fine-tune on the winners, then DPO from it (the fine-tuned model is the frozen reference);
  # with --dpo_ce_finetune false, DPO from the stage-5 model (the reference)
  if [ "${dpo_ce_finetune}" = true ]; then
    dpo_train "CE fine-tune on winners" "${dpo_exp}/ce_winners" "${lm_exp}" "${dpo_ce_opts}" --dpo_conf dpo_weight=0.0
    dpo_init="${dpo_exp}/ce_winners"
  else
    log "Stage 6: --dpo_ce_finetune false: no CE fine-tune on the winners; DPO starts from ${lm_exp}, its frozen reference"
    dpo_init="${lm_exp}"
  fi
  dpo_train "DPO training" "${dpo_exp}" "${dpo_init}" "${dpo_train_opts}"
  # 6e: the DPO model's reward on the same valid prompts, and its win rate over the stage-5 model's
  dpo_candidates "${dpo_exp}" "${valid_set}" "${dpo_valid_prompts}" "${dpo_exp}/reward_valid/cands"
  dpo_score "${dpo_exp}/reward_valid/cands" "${valid_set}" "${dpo_exp}/reward_valid" \
    --score_only --compare_rewards "${dpo_exp}/pairs/valid/rewards"
  summary=$(python -c '
import json, sys
c = json.load(open(sys.argv[1]))["compare"]
print("mean reward per prompt {:.4f} (stage-5 model) -> {:.4f} (DPO model); win rate of the DPO model {:.3f} over {:.0f} prompts".format(
    c["mean_b"], c["mean_a"], c["win_rate"], c["num_prompts"]))' "${dpo_exp}/reward_valid/stats.json")
  log "Stage 6: reward on the ${valid_set} prompts: ${summary} (${dpo_exp}/reward_valid/stats.json)"
  log "Stage 6: done; DPO model dir ${dpo_exp} ($(grep -o 'The training was finished at [0-9]* epochs' "${dpo_exp}/train.log" | tail -n 1))"
fi

# ---- stage 7: inference ----
if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
  stage_clock 7
  set_decode_models
  for m in "${decode_models[@]}"; do
    [ -f "${m}/config.yaml" ] \
      || die "Stage 7: ${m} has no config.yaml: run stage 5 first or pass --inference_model <trained model dir>"
    if [ "${m}" = "${lm_exp}" ] && [ ! -f "${lm_exp}/.done" ]; then
      die "Stage 7: the training in ${lm_exp} has not finished (no .done from stage 5): finish stage 5," \
          "or copy it and pass --inference_model <copy> to decode a partly trained model"
    fi
  done
  log "Stage 7: models to decode: ${decode_models[*]}"
  [ -f "${codec_dir}/component.yaml" ] || die "Stage 7: no trained codec in ${codec_dir}; run stage 3 first or pass --codec_dir"
  vae_opt=()
  if [ -n "${infer_vae_dir}" ]; then
    [ -f "${infer_vae_dir}/component.yaml" ] || die "Stage 7: no trained VAE in ${infer_vae_dir};" \
      "run stage 3, pass --vae_dir, or --vae_config '' to decode without enhancement"
    vae_opt=(--vae_dir "${infer_vae_dir}")
  fi
  codec_sig=$(component_sum "${codec_dir}")
  for inference_model in "${decode_models[@]}"; do
    decode_root="${inference_model}/decode_${inference_tag}"
    model_sig=$(stat -L -c '%n %s %Y' "${inference_model}"/*.pth 2>/dev/null | cksum | cut -d' ' -f1)
    for s in ${test_sets}; do
      for t in ${decode_tasks}; do
        json="${dumpdir}/${t}/${s}/data.json"
        dir="${decode_root}/${t}_${s}"
        [ -f "${json}" ] || die "Stage 7: ${json} is missing; run stage 4 with --tasks including ${t}"
        sig="model=${inference_model} model_sum=${model_sig} data=$(cksum < "${json}" | cut -d' ' -f1) codec_sum=${codec_sig} vae=${infer_vae_dir} cfg=${guidance_scale} top_k=${top_k} temperature=${temperature} seed=${inference_seed} opts=${inference_opts}"
        if stage_is_done "${dir}/.done" "${sig}"; then
          log "Stage 7: ${stage_names[7]}: ${dir} already done; --force true redoes it"
          continue
        fi
        if [ "${force}" = true ] && [ -d "${dir}" ]; then
          rm -rf "${dir:?}"/output.*  # otherwise lm_decode resumes the finished keys of an earlier run
        fi
        n_ex=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_examples"])' "${json}")
        [ "${n_ex}" -ge 1 ] || die "Stage 7: ${json} has no examples"
        _nj=$(( inference_nj < n_ex ? inference_nj : n_ex ))
        log "Stage 7: ${stage_names[7]}: ${json} -> ${dir} (model ${inference_model}, ${_nj} jobs on ${device})"
        # shellcheck disable=SC2086
        decode_shards "${inference_model}" "${json}" "${dir}" "${_nj}" --codec_dir "${codec_dir}" "${vae_opt[@]}" \
          --guidance_scale "${guidance_scale}" --top_k "${top_k}" --temperature "${temperature}" \
          --seed "${inference_seed}" "${inference_opts}"
        if [ "${t}" = caption_to_audio ]; then
          log "Stage 7: held-out audio-token loss: ${json} -> ${dir}/heldout_loss.md"
          run_jobs "${decode_job[*]}" "${dir}/log" "${dir}/log/heldout_loss.log" \
            python -m ualm_tk.bin.lm_heldout_loss --model_dir "${inference_model}" --data_json "${json}" \
              --train_codes "${dumpdir}/codes/${train_set}/codes.scp" --output_dir "${dir}" --device "${device}"
        else
          qtypes_opt=()
          [ -f "${datadir}/qtypes.json" ] && qtypes_opt=(--qtypes "${datadir}/qtypes.json")
          python -m ualm_tk.bin.score_understanding --data_json "${json}" --hyp "${dir}/text" \
            "${qtypes_opt[@]}" --output_dir "${dir}" || die "Stage 7: scoring ${dir}/text failed (see above)"
          log "Stage 7: scores of ${t} on ${s}: ${dir}/scores_understanding.md"
        fi
        echo "${sig}" > "${dir}/.done"
      done
    done
    log "Stage 7: done with ${inference_model}; outputs in ${decode_root}/<task>_<set>/ (text, wav.scp, scores_understanding.md, heldout_loss.md)"
  done
fi

# ---- stage 8: scoring ----
if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
  stage_clock 8
  # 8a: evaluator models (an audio tagger and a text-audio contrastive model), each with its own accuracy
  # (trained by stage 6 already when it ran with the same options)
  prepare_evaluators 8
  scorer_opts=()
  for d in ${eval_scorers}; do
    [ -f "${d}/component.yaml" ] || die "Stage 8: evaluator ${d} has no component.yaml (not a trained scorer)"
    scorer_opts+=(--scorer_dir "${d}")
  done
  scorers_sum=$(for d in ${eval_scorers}; do cat "${d}/model.pth" 2>/dev/null; done | cksum | cut -d' ' -f1)

  # score_audio <hyp dir> <scp name in it> <out dir> <done file> <set> <what>: score_dir with every evaluator
  score_audio() {
    local hyp=$1 scp=$2 out=$3 done_file=$4 set=$5 what=$6 sig
    [ -f "${hyp}/${scp}" ] || die "Stage 8: ${hyp}/${scp} is missing; run stage 7 first"
    sig="hyp=$(cksum < "${hyp}/${scp}" | cut -d' ' -f1) ref=$(cksum < "${dumpdir}/audio/${set}/wav.scp" | cut -d' ' -f1) scorers=${eval_scorers} scorers_sum=${scorers_sum} opts=${scoring_opts}"
    # scores are derived outputs: when their audio or evaluators changed (e.g. retrained), score again
    if [ -f "${done_file}" ] && [ "$(cat "${done_file}")" != "${sig}" ]; then
      log "Stage 8: ${what}: the audio or the evaluators changed since ${out}/scores.json was written: scoring again"
      rm -f "${done_file}"
    fi
    if stage_is_done "${done_file}" "${sig}"; then
      log "Stage 8: ${what}: ${out}/scores.json already done"
      return 0
    fi
    log "Stage 8: ${stage_names[8]}: ${hyp}/${scp} vs ${dumpdir}/audio/${set} -> ${out}/scores.json (${what})"
    # shellcheck disable=SC2086
    run_jobs "${decode_cmd}" "${out}/log" "${out}/log/score_${scp%.scp}.log" \
      python -m ualm_tk.bin.score_dir --hyp_dir "${hyp}" --hyp_wav_scp "${scp}" --ref_dir "${dumpdir}/audio/${set}" \
        --captions false "${scorer_opts[@]}" --out_dir "${out}" ${scoring_opts}
    echo "${sig}" > "${done_file}"
  }

  # the decodes of every model stage 7 decoded (the stage-5 model, and the DPO model once stage 6 finished)
  set_decode_models
  decode_roots=()
  for m in "${decode_models[@]}"; do
    decode_root="${m}/decode_${inference_tag}"
    [ -d "${decode_root}" ] || die "Stage 8: ${decode_root} is missing; run stage 7 first (same --inference_* options)"
    decode_roots+=("${decode_root}")
  done
  for s in ${test_sets}; do
    for decode_root in "${decode_roots[@]}"; do
      for t in ${decode_tasks}; do
        dir="${decode_root}/${t}_${s}"
        [ -f "${dir}/.done" ] || die "Stage 8: ${dir} is not finished (no .done); run stage 7 first"
        case "${t}" in
          caption_to_audio)
            score_audio "${dir}" wav.scp "${dir}" "${dir}/.done.scores" "${s}" "generated audio"
            if [ -f "${dir}/wav_vae.scp" ]; then
              score_audio "${dir}" wav_vae.scp "${dir}/scores_vae" "${dir}/.done.scores_vae" "${s}" "VAE-enhanced audio"
              cmp -s "${dir}/scores_vae/scores.json" "${dir}/scores_vae.json" \
                || cp "${dir}/scores_vae/scores.json" "${dir}/scores_vae.json"
            fi ;;
          audio_to_caption)
            [ -f "${dir}/text" ] || die "Stage 8: ${dir}/text is missing; run stage 7 first"
            sig="hyp=$(cksum < "${dir}/text" | cut -d' ' -f1) ref=$(cksum < "${dumpdir}/audio/${s}/text" | cut -d' ' -f1)"
            if stage_is_done "${dir}/.done.scores" "${sig}"; then
              log "Stage 8: captions: ${dir}/scores.json already done"
            else
              log "Stage 8: ${stage_names[8]}: ${dir}/text vs ${dumpdir}/audio/${s}/text -> ${dir}/scores.json (caption metrics)"
              # an empty caption is a (bad) model output, not a broken file: it is scored as the word <empty>
              mkdir -p "${dir}/caption_scoring"
              awk 'NF == 1 { print $1 " <empty>"; next } { print }' "${dir}/text" > "${dir}/caption_scoring/text"
              n_empty=$(awk 'NF == 1' "${dir}/text" | wc -l)
              [ "${n_empty}" -eq 0 ] || log "Stage 8: ${n_empty} empty caption(s) in ${dir}/text, scored as '<empty>'"
              run_jobs "${decode_cmd}" "${dir}/log" "${dir}/log/score_captions.log" \
                python -m ualm_tk.bin.score_dir --hyp_dir "${dir}/caption_scoring" --ref_dir "${dumpdir}/audio/${s}" \
                  --out_dir "${dir}"
              echo "${sig}" > "${dir}/.done.scores"
            fi ;;
          *)
            [ -f "${dir}/scores_understanding.json" ] || die "Stage 8: ${dir}/scores_understanding.json is missing; rerun stage 7 (--force true)"
            log "Stage 8: ${t} on ${s}: collecting ${dir}/scores_understanding.json" ;;
        esac
      done
    done

    # 8b: ceilings of text-to-audio on this set, scored the same way
    [[ " ${decode_tasks} " == *" caption_to_audio "* ]] || continue
    cdir="${expdir}/ceilings_${s}"
    ref="${dumpdir}/audio/${s}"
    mkdir -p "${cdir}/ground_truth" "${cdir}/codec"
    cmp -s "${ref}/wav.scp" "${cdir}/ground_truth/wav.scp" || cp "${ref}/wav.scp" "${cdir}/ground_truth/wav.scp"
    score_audio "${cdir}/ground_truth" wav.scp "${cdir}/ground_truth" "${cdir}/ground_truth/.done.scores" "${s}" "ceiling: ground truth"
    codec_sum=$(component_sum "${codec_dir}")
    sig="codec=${codec_dir} codec_sum=${codec_sum} ref=$(cksum < "${ref}/wav.scp" | cut -d' ' -f1)"
    if ! stage_is_done "${cdir}/codec/.done" "${sig}"; then
      if [ -f "${dumpdir}/vae/${s}/wav.scp" ] && [ -f "${expdir}/vae_${vae_tag}/.done" ] \
          && cmp -s <(cut -d' ' -f1 "${dumpdir}/vae/${s}/wav.scp") <(cut -d' ' -f1 "${ref}/wav.scp"); then
        log "Stage 8: ceiling: the codec resynthesis of stage 3 ${dumpdir}/vae/${s}/wav.scp -> ${cdir}/codec"
        cp "${dumpdir}/vae/${s}/wav.scp" "${cdir}/codec/wav.scp"
      else
        log "Stage 8: ceiling: ${ref}/wav.scp -> ${cdir}/codec (codec resynthesis with ${codec_dir})"
        run_jobs "${decode_cmd}" "${cdir}/log" "${cdir}/log/codec_resynth.log" \
          python -m ualm_tk.bin.codec_resynth --codec_dir "${codec_dir}" --resample true \
            --wav_scp "${ref}/wav.scp" --out_dir "${cdir}/codec"
      fi
      echo "${sig}" > "${cdir}/codec/.done"
    fi
    score_audio "${cdir}/codec" wav.scp "${cdir}/codec" "${cdir}/codec/.done.scores" "${s}" "ceiling: codec resynthesis"
    if [ -n "${infer_vae_dir}" ]; then
      [ -f "${infer_vae_dir}/component.yaml" ] || die "Stage 8: no trained VAE in ${infer_vae_dir}"
      vae_sum=$(component_sum "${infer_vae_dir}")
      sig="vae=${infer_vae_dir} vae_sum=${vae_sum} codec=$(cksum < "${cdir}/codec/wav.scp" | cut -d' ' -f1)"
      if ! stage_is_done "${cdir}/vae/.done" "${sig}"; then
        log "Stage 8: ceiling: ${cdir}/codec -> ${cdir}/vae (enhanced with ${infer_vae_dir})"
        run_jobs "${decode_cmd}" "${cdir}/log" "${cdir}/log/vae_enhance.log" \
          python -m ualm_tk.bin.vae_enhance --vae_dir "${infer_vae_dir}" --wav_scp "${cdir}/codec/wav.scp" \
            --out_dir "${cdir}/vae" --resample_input true
        echo "${sig}" > "${cdir}/vae/.done"
      fi
      score_audio "${cdir}/vae" wav.scp "${cdir}/vae" "${cdir}/vae/.done.scores" "${s}" "ceiling: codec + VAE"
    fi
  done

  # 8c: one RESULTS.md with tables and plots
  ceil_opt=()
  [[ " ${decode_tasks} " == *" caption_to_audio "* ]] && ceil_opt=(--ceilings_root "${expdir}")
  inputs=$(for s in ${test_sets}; do
             find "${decode_roots[@]}" -maxdepth 2 -path "*_${s}/*" \( -name 'scores*.json' -o -name heldout_loss.json \)
             if [ -d "${expdir}/ceilings_${s}" ]; then find "${expdir}/ceilings_${s}" -maxdepth 2 -name scores.json; fi
           done | sort)
  # shellcheck disable=SC2086
  sig="inputs=$(cat ${inputs} /dev/null | cksum | cut -d' ' -f1) tasks=${decode_tasks} sets=${test_sets} samples=${num_result_samples} out=${results_dir}"
  # (made again whenever a score file changed: RESULTS.md only reflects its inputs)
  if [ -f "${results_dir}/RESULTS.md" ] && [ "${force}" != true ] && [ "$(cat "${expdir}/.done.results" 2>/dev/null)" = "${sig}" ]; then
    log "Stage 8: RESULTS.md already up to date with its inputs"
  else
    rm -f "${expdir}/.done.results"
    mkdir -p "${results_dir}"
    # shellcheck disable=SC2086
    python -m ualm_tk.bin.make_results --exp_dirs "${decode_roots[@]}" --sets ${test_sets} --tasks ${decode_tasks} \
      "${ceil_opt[@]}" --audio_dump "${dumpdir}/audio" --num_samples "${num_result_samples}" --out "${results_dir}/RESULTS.md" \
      || die "Stage 8: make_results failed (see above)"
    echo "${sig}" > "${expdir}/.done.results"
  fi
  rdir=$(cd "${results_dir}" && pwd)
  log "Stage 8: done; results table: ${rdir}/RESULTS.md; plots: ${rdir}/results_images/; sample wavs: ${rdir}/results_samples/;" \
      "per-set scores: {${decode_roots[*]// /,}}/<task>_<set>/scores.json, ceilings: ${expdir}/ceilings_<set>/"
fi

stage_clock ""
log "finished stages ${stage}..${stop_stage}${run_times:+; wall time per stage: ${run_times} (all runs: ${expdir}/stage_times.tsv)}"
