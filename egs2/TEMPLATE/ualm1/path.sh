# Sourced by every recipe script: puts the project's venv and utils first.
# MAIN_ROOT is the ualm_tk checkout (this file lives in egs2/TEMPLATE/ualm1/, recipes link to it).
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
export MAIN_ROOT
if [ ! -x "${MAIN_ROOT}/tools/venv/bin/python" ]; then
  echo "path.sh: ${MAIN_ROOT}/tools/venv is missing; run 'make install' in ${MAIN_ROOT} first" >&2
  return 1 2>/dev/null || exit 1
fi
export PATH="${MAIN_ROOT}/tools/venv/bin:${MAIN_ROOT}/utils:${PATH}"
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
# One thread per job unless a job asks for more (--num_threads): jobs run in parallel.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
