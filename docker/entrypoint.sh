#!/usr/bin/env bash
# Entrypoint of the regrow image (Airflow scheduler, DAG processor, API server, workers, and
# the Spark jobs they submit).
#
#   _AIRFLOW_DB_MIGRATE=true   run `airflow db migrate` first (idempotent); set it on one
#                              init container or service, as with the official Airflow image
#   <command> [args...]        then exec the command, so it gets PID 1's signals;
#                              a bare Airflow subcommand (`scheduler`, `dags list`) runs as
#                              `airflow <subcommand>`
set -euo pipefail

is_true() {
  case "${1,,}" in
    true | 1 | yes | y) return 0 ;;
    *) return 1 ;;
  esac
}

if [[ $# -eq 0 ]]; then
  set -- airflow version
fi

if ! command -v -- "$1" >/dev/null 2>&1; then
  set -- airflow "$@"
fi

if is_true "${_AIRFLOW_DB_MIGRATE:-false}"; then
  echo "entrypoint: airflow db migrate (AIRFLOW_HOME=${AIRFLOW_HOME:-unset})" >&2
  if ! airflow db migrate; then
    echo "entrypoint: airflow db migrate failed; not starting: $*" >&2
    exit 1
  fi
fi

exec "$@"
