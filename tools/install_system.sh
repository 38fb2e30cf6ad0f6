#!/usr/bin/env bash
# Installs the Debian packages listed in tools/system_packages.txt, plus the labelled
# recordings of tuxpaint-stamps-default unpacked (not installed) under tools/downloads/.
#
# What it does, step by step, printed as it goes:
#   1. asks dpkg which listed packages are missing; if none, it changes nothing;
#   2. as root: `apt-get update` (once) and `apt-get install -y <missing>`;
#      not root: prints the missing packages and the command an administrator must run, exits 1;
#   3. `apt-get download tuxpaint-stamps-default` + `dpkg -x` into tools/downloads/tuxpaint
#      (no root needed; skipped when already there).
# Usage: tools/install_system.sh [--check]   (--check: only report, never install)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "[install_system] $*"; }
die() { echo "[install_system] ERROR: $*" >&2; exit 1; }

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

command -v dpkg-query >/dev/null || die "dpkg-query not found: this installer supports Debian/Ubuntu only. Install the packages in ${here}/system_packages.txt with your system's package manager."

mapfile -t pkgs < <(grep -v '^\s*#' "${here}/system_packages.txt" | awk 'NF{print $1}')
missing=()
for p in "${pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#pkgs[@]} Debian packages present"
elif $check_only; then
  die "missing Debian packages: ${missing[*]}"
elif [ "$(id -u)" -eq 0 ]; then
  log "installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "[install_system] missing Debian packages: ${missing[*]}" >&2
  echo "[install_system] you are not root; ask an administrator to run:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

# Real labelled recordings (dog, cow, kettle, ...): unpacked into the project, not installed.
tux_dir="${here}/downloads/tuxpaint"
if [ -d "${tux_dir}/usr/share/tuxpaint/stamps" ]; then
  log "tuxpaint stamps present in ${tux_dir}"
elif $check_only; then
  die "tuxpaint stamps missing in ${tux_dir} (run tools/install_system.sh)"
else
  log "downloading tuxpaint-stamps-default (~160 MB) and unpacking into ${tux_dir}"
  tmp=$(mktemp -d)
  trap 'rm -rf "${tmp}"' EXIT
  if ! (cd "${tmp}" && apt-get download -q tuxpaint-stamps-default >/dev/null); then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; (cd "${tmp}" && apt-get download -q tuxpaint-stamps-default >/dev/null); \
    else die "apt-get download tuxpaint-stamps-default failed (run 'apt-get update' as root first?)"; fi
  fi
  mkdir -p "${tux_dir}.partial"
  dpkg -x "${tmp}"/tuxpaint-stamps-default_*.deb "${tux_dir}.partial"
  rm -rf "${tux_dir}"; mv "${tux_dir}.partial" "${tux_dir}"
  log "tuxpaint stamps unpacked"
fi
