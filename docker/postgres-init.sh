#!/usr/bin/env bash
# The postgres service's first start (an empty data volume): MLflow's database beside
# Airflow's (POSTGRES_DB), owned by the same user. The postgres image runs the scripts of
# /docker-entrypoint-initdb.d once; a database of that name already there is kept.
set -euo pipefail

db="${MLFLOW_DB:-mlflow}"
exists="$(psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
  -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'")"
if [[ "${exists}" != "1" ]]; then
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
    -c "CREATE DATABASE \"${db}\" OWNER \"${POSTGRES_USER}\""
fi
