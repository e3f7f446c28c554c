# syntax=docker/dockerfile:1
# One image for the Airflow scheduler / DAG processor / API server / workers and for the
# Spark jobs they submit (spark-submit runs from the same venv, `local[*]` or a cluster).
#
#   docker build -t regrow .
#   docker run --rm -e _AIRFLOW_DB_MIGRATE=true regrow airflow dags list
#
# The Delta Lake JVM connector and hadoop-aws (s3a://) are baked into $REGROW_JARS_DIR, so
# `lakehouse.engine: auto` (or delta-spark) runs on Delta's own connector in this image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${PYTHON_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian security updates arrive under the same package names: versions are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless ca-certificates curl procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17

COPY --from=uv /uv /uvx /usr/local/bin/

ENV REGROW_HOME=/opt/regrow
ENV JAVA_HOME=/usr/lib/jvm/java-17 \
    UV_PROJECT_ENVIRONMENT=${REGROW_HOME}/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1
ENV PATH=${REGROW_HOME}/.venv/bin:${PATH} \
    SPARK_HOME=${REGROW_HOME}/.venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=${REGROW_HOME}/.venv/bin/python \
    PYSPARK_DRIVER_PYTHON=${REGROW_HOME}/.venv/bin/python

WORKDIR ${REGROW_HOME}

# Dependencies first (cached while only the code changes), exactly as locked.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Spark's JVM side, baked in (no download at container start): the jars regrow pins for the
# locked pyspark (Delta Lake's connector and its Kernel modules, hadoop-aws and the AWS SDK
# it was built against), each checked against its pinned SHA-1. The same stdlib-only script
# `make setup` runs, before the project is installed so that this layer outlives code changes.
ARG REGROW_MAVEN_REPO=https://repo1.maven.org/maven2
ENV REGROW_JARS_DIR=${REGROW_HOME}/jars
COPY include/regrow/orchestration/jars.py /tmp/regrow-jars.py
RUN REGROW_MAVEN_REPO="${REGROW_MAVEN_REPO}" python /tmp/regrow-jars.py fetch \
    && rm /tmp/regrow-jars.py

# The project itself (editable, so dags/ and jobs/ import the same regrow package).
COPY include/ include/
COPY dags/ dags/
COPY jobs/ jobs/
COPY params.yaml ./
COPY docker/entrypoint.sh /usr/local/bin/regrow-entrypoint
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && python -c "from regrow.orchestration import jars; assert jars.present(jars.DELTA) and jars.present(jars.S3A)"

# Airflow's convention: uid 50000, group 0, so that any uid an orchestrator picks can write.
RUN useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home airflow \
    && mkdir -p "${REGROW_HOME}/airflow_home" "${REGROW_HOME}/data" "${REGROW_HOME}/reports" \
    && chown -R airflow:0 "${REGROW_HOME}/airflow_home" "${REGROW_HOME}/data" "${REGROW_HOME}/reports" \
    && chmod -R g+rwX "${REGROW_HOME}/airflow_home" "${REGROW_HOME}/data" "${REGROW_HOME}/reports"

ENV AIRFLOW_HOME=${REGROW_HOME}/airflow_home \
    AIRFLOW__CORE__DAGS_FOLDER=${REGROW_HOME}/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[*]"}' \
    REGROW_PARAMS=${REGROW_HOME}/params.yaml

USER 50000

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/regrow-entrypoint"]
CMD ["airflow", "version"]
