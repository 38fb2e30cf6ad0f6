#!/usr/bin/env bash
# Option parsing for recipe scripts (sourced, Kaldi style).
#
# A script declares every option once as a shell variable with a default, each preceded by
# a '# ' comment line, between the markers '# <options>' and '# </options>'. Sourcing this
# file then:
#   * maps '--name value' and '--name=value' onto the variable 'name' (dashes in the option
#     name become underscores);
#   * prints every declared option, its default and its comment for '--help' / '-h', exits 0;
#   * rejects an undeclared option, a missing value, and a value that breaks the declared
#     type (the default's type: integer, float, true/false) with an error, before any work.
# Positional arguments remain in "$@".
__po_script=${0}
__po_decls() {
  # prints: name<US>default<US>comment (US = \037, so empty fields survive read), for options declared in the calling script
  awk '
    /^# <options>/ {on=1; next}
    /^# <\/options>/ {on=0}
    on && /^[[:space:]]*#/ {sub(/^[[:space:]]*#[[:space:]]?/, ""); c = (c=="" ? $0 : c " " $0); next}
    on && /^[A-Za-z_][A-Za-z0-9_]*=/ {
      n = $0; sub(/=.*/, "", n); d = $0; sub(/^[^=]*=/, "", d); sub(/[[:space:]]+#.*$/, "", d);
      gsub(/^"|"$/, "", d); printf "%s\037%s\037%s\n", n, d, c; c=""; next}
    on {c=""}
  ' "${__po_script}"
}
__po_usage() {
  echo "Usage: ${__po_script} [options] ${__po_positional:-}"
  echo "Options (default in brackets):"
  __po_decls | while IFS=$'\037' read -r n d c; do
    printf "  --%-28s %s [%s]\n" "${n//_/-}" "${c}" "${__po_default[${n}]-${d}}"
  done
}
__po_check_type() {  # name default value
  local n=$1 d=$2 v=$3
  if [[ "${d}" =~ ^-?[0-9]+$ ]] && ! [[ "${v}" =~ ^-?[0-9]+$ ]]; then
    echo "${__po_script}: --${n} expects an integer, got '${v}'" >&2; exit 2
  elif [[ "${d}" =~ ^-?[0-9]*\.[0-9]+$ ]] && ! [[ "${v}" =~ ^-?[0-9]*\.?[0-9]+([eE]-?[0-9]+)?$ ]]; then
    echo "${__po_script}: --${n} expects a number, got '${v}'" >&2; exit 2
  elif [[ "${d}" == true || "${d}" == false ]] && [[ "${v}" != true && "${v}" != false ]]; then
    echo "${__po_script}: --${n} expects true or false, got '${v}'" >&2; exit 2
  fi
  return 0
}
declare -A __po_default=()
# defaults are the variables' values now, before any option is applied
while IFS=$'\037' read -r __n __d __c; do __po_default["${__n}"]="${!__n-${__d}}"; done < <(__po_decls)
__po_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) __po_usage; exit 0 ;;
    --) shift; __po_args+=("$@"); break ;;
    --*)
      __opt=${1#--}
      if [[ "${__opt}" == *=* ]]; then __val=${__opt#*=}; __opt=${__opt%%=*}; shift
      else
        [ $# -ge 2 ] || { echo "${__po_script}: option --${__opt} needs a value" >&2; exit 2; }
        __val=$2; shift 2
      fi
      __name=${__opt//-/_}
      if [ -z "${__po_default[${__name}]+x}" ]; then
        echo "${__po_script}: unknown option --${__opt} (see --help)" >&2; exit 2
      fi
      __po_check_type "${__name}" "${__po_default[${__name}]}" "${__val}"
      printf -v "${__name}" '%s' "${__val}"
      ;;
    *) __po_args+=("$1"); shift ;;
  esac
done
set -- "${__po_args[@]+"${__po_args[@]}"}"
unset __po_args __opt __val __name __n __d __c
