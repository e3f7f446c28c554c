#!/usr/bin/env bash
# Installs regrow's locked Python environment and its pinned JVM jars. The Dockerfile runs
# it, and so can anyone outside Docker (tests/integration/test_docker_install.py does):
#
#   docker/install.sh --prefix DIR            the venv in DIR/venv, the jars in DIR/jars
#   docker/install.sh --venv DIR --jars DIR   each where given
#     --jars-cache DIR  where jars are fetched to and kept (default: the machine's cache that
#                       `make setup` fills, ~/.cache/regrow/jars/spark-<line>); they are then
#                       hard-linked (copied across filesystems) into --jars, so a second
#                       install downloads nothing
#     --no-project      the locked dependencies and the jars, not regrow itself (the
#                       Dockerfile's layer that outlives code changes)
#     --no-jars         the venv only
#
# The venv: exactly uv.lock without the dev group (`uv sync --frozen --no-dev`), regrow
# installed editable from this checkout (its DAG helpers find jobs/ beside include/). uv's
# sync is exact: into a venv that already exists, such as the official Airflow image's
# ~/.local, it keeps the interpreter and removes every package the lock does not list, so
# the result has one Airflow, the locked one (docs/operations.md, "The image").
# The jars: include/regrow/orchestration/jars.py pins them (SHA-1 checked when fetched).
set -euo pipefail

die() {
  echo "install.sh: $*" >&2
  exit 2
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jars_py="${root}/include/regrow/orchestration/jars.py"
venv="" jars="" jars_cache="${REGROW_JARS_CACHE:-}" project=1 with_jars=1

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix)
      [[ $# -ge 2 ]] || die "--prefix needs a directory"
      venv="$2/venv" jars="$2/jars"
      shift 2
      ;;
    --venv | --jars | --jars-cache)
      [[ $# -ge 2 ]] || die "$1 needs a directory"
      case "$1" in
        --venv) venv="$2" ;;
        --jars) jars="$2" ;;
        --jars-cache) jars_cache="$2" ;;
      esac
      shift 2
      ;;
    --no-project) project=0 && shift ;;
    --no-jars) with_jars=0 && shift ;;
    -h | --help)
      sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$1': use --prefix DIR, or --venv DIR [--jars DIR] (--help)" ;;
  esac
done
[[ -n "${venv}" ]] || die "no target: use --prefix DIR, or --venv DIR [--jars DIR] (--help)"
if [[ ${with_jars} -eq 1 && -z "${jars}" ]]; then
  die "no jars directory: add --jars DIR, or --no-jars"
fi

uv="${UV:-$(command -v uv || echo "${HOME}/.local/bin/uv")}"
[[ -x "${uv}" ]] || die "uv not found: install it (python3 -m pip install uv) or set UV=/path/to/uv"
venv="$(mkdir -p "$(dirname "${venv}")" && cd "$(dirname "${venv}")" && pwd)/$(basename "${venv}")"

# Never download a Python: the venv's (an existing one is kept) or the machine's 3.11.
export UV_PYTHON_DOWNLOADS=never
sync_args=(--frozen --no-dev --project "${root}")
[[ ${project} -eq 1 ]] || sync_args+=(--no-install-project)
echo "install.sh: uv sync ${sync_args[*]} into ${venv}"
UV_PROJECT_ENVIRONMENT="${venv}" "${uv}" sync "${sync_args[@]}"

if [[ ${with_jars} -eq 1 ]]; then
  python="${venv}/bin/python"
  # jars.py names the cache `make setup` uses when $REGROW_JARS_DIR is unset.
  [[ -n "${jars_cache}" ]] || jars_cache="$(env -u REGROW_JARS_DIR "${python}" "${jars_py}" path)"
  mkdir -p "${jars}"
  jars="$(cd "${jars}" && pwd)"
  mkdir -p "${jars_cache}"
  jars_cache="$(cd "${jars_cache}" && pwd)"
  # Fetch into the cache (only the jars it lacks: ~700 MB the first time), then link them in.
  "${python}" "${jars_py}" fetch "${jars_cache}"
  if [[ "${jars_cache}" != "${jars}" ]]; then
    for jar in "${jars_cache}"/*.jar; do
      target="${jars}/$(basename "${jar}")"
      # Same size is taken as the same jar, as jars.py does (the SHA-1 was checked on fetch).
      if [[ ! -f "${target}" || $(stat -c %s "${jar}") != $(stat -c %s "${target}") ]]; then
        rm -f "${target}"
        ln "${jar}" "${target}" 2>/dev/null || cp "${jar}" "${target}"
      fi
    done
    # Checks every jar of the pin list is in place (by size; nothing to download).
    "${python}" "${jars_py}" fetch "${jars}"
  fi
fi
echo "install.sh: done (venv ${venv}${jars:+, jars ${jars}})"
