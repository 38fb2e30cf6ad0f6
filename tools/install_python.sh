#!/usr/bin/env bash
# Creates tools/venv (if absent) and installs the pinned Python packages of
# tools/requirements.txt plus ualm_tk itself (editable). Idempotent: when the venv already
# matches the requirements file (a stamp holds its checksum) it does nothing.
# Usage: tools/install_python.sh [PYTHON]   (default: python3, must be >= 3.10)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "${here}/.." && pwd)
log() { echo "[install_python] $*"; }
die() { echo "[install_python] ERROR: $*" >&2; exit 1; }

python=${1:-python3}
venv="${here}/venv"
stamp="${venv}/.ualm_tk_installed"
want=$(cat "${here}/requirements.txt" "${root}/setup.py" | sha256sum | cut -d' ' -f1)

# the few-row GEMV kernel of decoding, compiled once per machine into torch's extension cache (~10 s;
# a no-op when the cached build matches); without a C++ compiler decoding still works, at about half the speed
build_kernel() {
  if ! "${venv}/bin/python" -m ualm_tk.bin.build_gemv_kernel; then
    log "WARNING: the few-row GEMV kernel could not be built (see above): decoding uses torch's F.linear"
  fi
}

if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
  log "tools/venv is up to date"
  build_kernel
  exit 0
fi
command -v "${python}" >/dev/null || die "${python} not found; install Python >= 3.10"
"${python}" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
  || die "${python} is older than 3.10"
if [ ! -x "${venv}/bin/python" ]; then
  log "creating ${venv} with $(${python} --version)"
  "${python}" -m venv "${venv}"
fi
# pip >= 26 refuses espnet's dependency ci_sdr (it declares a direct-URL extra): keep pip < 26.
"${venv}/bin/python" -m pip install -q "pip>=23,<26" "wheel"
log "installing tools/requirements.txt (torch, torchaudio, espnet, ...; several minutes on a fresh venv)"
"${venv}/bin/python" -m pip install --progress-bar off -r "${here}/requirements.txt"
log "installing ualm_tk (editable)"
"${venv}/bin/python" -m pip install -q --no-deps --no-build-isolation -e "${root}"
"${venv}/bin/python" -c 'import torch, torchaudio, espnet2, ualm_tk; print("[install_python] torch", torch.__version__, "torchaudio", torchaudio.__version__)'
echo "${want}" > "${stamp}"
build_kernel
log "done"
