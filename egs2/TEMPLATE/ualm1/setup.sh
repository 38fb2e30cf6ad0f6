#!/usr/bin/env bash
# Creates a new recipe directory that uses this template:
#   egs2/TEMPLATE/ualm1/setup.sh egs2/<corpus>/ualm1
# It links ualm.sh, path.sh and utils/ (shared code, updated with the toolkit), copies cmd.sh and
# conf/slurm.conf, the codec/VAE configs conf/{codec,vae}/ and conf/audio_encoder_pretrain.yaml (yours to edit) and writes a run.sh that passes "$@" last.
# You then write local/data.sh, which must produce data/<set>/ (see README, "Stage 1").
set -euo pipefail
log() { echo "[setup.sh] $*"; }
die() { echo "[setup.sh] ERROR: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 <new recipe dir, e.g. egs2/my_corpus/ualm1>"
template=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
main_root=$(cd "${template}/../../.." && pwd)
target=$1
[ -e "${target}" ] && die "${target} already exists; refusing to overwrite it"
mkdir -p "${target}/conf" "${target}/local"
target=$(cd "${target}" && pwd)
rel() { python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
ln -s "$(rel "${template}/ualm.sh" "${target}")" "${target}/ualm.sh"
ln -s "$(rel "${template}/path.sh" "${target}")" "${target}/path.sh"
ln -s "$(rel "${main_root}/utils" "${target}")" "${target}/utils"
cp "${template}/cmd.sh" "${target}/cmd.sh"
cp "${template}/conf/slurm.conf" "${target}/conf/slurm.conf"
cp -r "${template}/conf/codec" "${template}/conf/vae" "${template}/conf/audio_encoder_pretrain.yaml" "${target}/conf/"
cat > "${target}/run.sh" <<'RUN'
#!/usr/bin/env bash
# Recipe entry point: set this corpus's options here; command-line options ("$@") win.
set -euo pipefail
./ualm.sh \
    --fs 16000 \
    "$@"
RUN
chmod +x "${target}/run.sh"
log "created ${target}"
log "next: write ${target}/local/data.sh (stage 1: writes data/<train,valid,test>/ with wav.scp, text, utt2spk, ...),"
log "      then run: cd ${target} && ./run.sh --stage 1 --stop_stage 2"
