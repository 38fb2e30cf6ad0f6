#!/usr/bin/env bash
# Stage 1 of the mini_ualm recipe: synthesise the truthfully captioned local corpus.
# Writes <corpus_dir>/wav/*.wav (48 kHz masters) and <data_dir>/{train,valid,test}/ Kaldi-style
# dirs (wav.scp text utt2spk utt2category metadata rich_caption qa/ text_only/), plus
# <data_dir>/{heldout.json,qtypes.json,corpus_stats.md}. Deterministic from --seed, whatever --nj.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# <options>
# directory for the 48 kHz master wavs (<corpus_dir>/wav/<utt>.wav)
corpus_dir=corpus
# directory for the Kaldi-style data dirs (<data_dir>/{train,valid,test})
data_dir=data
# total number of clips over train/valid/test (about 80/10/10)
num_clips=2000
# training clips (0: num_clips less valid and test); more adds training clips, drawn after the default ones
# under the same held-out policy: valid, test and the default training clips stay the same
train_clips=0
# random seed of every generation choice
seed=0
# text-only problems per training clip (valid/test get one per clip); they are cheap, and arithmetic needs many
text_problems_per_clip=8
# number of parallel worker processes (the output does not depend on it)
nj=2
# </options>

[ -f path.sh ] && . ./path.sh
. utils/parse_options.sh

[ $# -eq 0 ] || die "unexpected arguments: $*"
[ "${num_clips}" -ge 3 ] || die "--num_clips must be at least 3, got ${num_clips}"
[ "${train_clips}" -ge 0 ] || die "--train_clips must be at least 0 (0: the default split), got ${train_clips}"
[ "${text_problems_per_clip}" -ge 1 ] || die "--text_problems_per_clip must be at least 1, got ${text_problems_per_clip}"
[ "${nj}" -ge 1 ] || die "--nj must be at least 1, got ${nj}"
[ -n "${corpus_dir}" ] || die "--corpus_dir is empty"
[ -n "${data_dir}" ] || die "--data_dir is empty"
for tool in espeak-ng flite fluidsynth sox; do
  command -v "${tool}" >/dev/null || die "${tool} not found: run tools/install_system.sh"
done
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || die "TimGM6mb.sf2 missing: run tools/install_system.sh"
python=${PYTHON:-python}
command -v "${python}" >/dev/null || die "${python} not found (source path.sh or set PYTHON)"

what="${num_clips} clips"
[ "${train_clips}" -gt 0 ] && what="the valid/test clips of ${num_clips} and ${train_clips} training clips"
log "Generating ${what} (seed ${seed}, nj ${nj}): ${corpus_dir}/wav, ${data_dir}"
"${python}" "$(dirname "$0")/make_corpus.py" --corpus_dir "${corpus_dir}" --data_dir "${data_dir}" \
  --num_clips "${num_clips}" --train_clips "${train_clips}" --seed "${seed}" --nj "${nj}" \
  --text_problems_per_clip "${text_problems_per_clip}" \
  || die "corpus generation failed"
log "Done: ${data_dir}/corpus_stats.md"
