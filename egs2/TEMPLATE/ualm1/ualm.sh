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
stage_names=([1]="data preparation" [2]="audio formatting and validation")
last_implemented_stage=2

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

# ---- helpers ----
# stage_is_done <done-file> <signature>: 0 when outputs exist for the same options
# (skip), 1 when the stage must run. Outputs made with other options are an error unless --force.
stage_is_done() {
  local done_file=$1 signature=$2
  [ -f "${done_file}" ] || return 1
  if [ "${force}" = true ]; then
    rm -f "${done_file}"
    return 1
  fi
  if [ "$(cat "${done_file}")" != "${signature}" ]; then
    die "${done_file} was made with other options:" $'\n' "  then: $(cat "${done_file}")" $'\n' \
        "  now:  ${signature}" $'\n' "  pass --force true to redo it, or restore the options"
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

log "${cmdline}"
log "stages ${stage}..${stop_stage}, backend ${cmd_backend}, nj ${nj}"

# ---- stage 1: data preparation ----
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  sig="local/data.sh --data_dir ${datadir} --nj ${nj} ${local_data_opts}"
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
  for s in ${all_sets}; do
    src="${datadir}/${s}"
    dst="${dumpdir}/audio/${s}"
    sig="fs=${fs} channels=${audio_channels} format=${audio_format} min_dur=${min_dur} max_dur=${max_dur} silence_db=${silence_db} src=$(cksum < "${src}/wav.scp" 2>/dev/null | cut -d' ' -f1)"
    [ -f "${src}/wav.scp" ] || die "Stage 2: ${src}/wav.scp is missing; run stage 1 first"
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

log "finished stages ${stage}..${stop_stage}"
