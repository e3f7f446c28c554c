# syntax=docker/dockerfile:1
# One image for the Airflow scheduler / DAG processor / API server / workers and for the
# Spark jobs they submit (spark-submit runs from the same venv, `local[*]` or a cluster).
#
#   docker build -t regrow .
#   docker run --rm -e _AIRFLOW_DB_MIGRATE=true regrow airflow dags list
#
# The Delta Lake JVM connector and hadoop-aws (s3a://) are baked into Spark's jars, so
# `lakehouse.engine: auto` picks delta-spark in this image.

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

# Spark's JVM side: Delta Lake (must match the delta-spark wheel in uv.lock) and hadoop-aws
# (must match Hadoop in pyspark's jars) with the AWS SDK bundle that hadoop-aws was built
# against (read from Hadoop's own POM unless given). Each jar is checked against the SHA-1
# Maven Central publishes next to it, and against a pinned SHA-256 when one is passed:
#   --build-arg DELTA_SPARK_SHA256=... (recommended for release builds).
ARG MAVEN_REPO=https://repo1.maven.org/maven2
ARG SCALA_BINARY_VERSION=2.13
ARG DELTA_VERSION=4.1.0
ARG HADOOP_VERSION=3.5.0
ARG AWS_SDK_VERSION=""
ARG DELTA_SPARK_SHA256=""
ARG DELTA_STORAGE_SHA256=""
ARG HADOOP_AWS_SHA256=""
ARG AWS_SDK_BUNDLE_SHA256=""
RUN set -eu; \
    jars="${SPARK_HOME}/jars"; \
    test -d "${jars}"; \
    wheel_delta="$(python -c 'import importlib.metadata as m; print(m.version("delta-spark"))')"; \
    if [ "${wheel_delta}" != "${DELTA_VERSION}" ]; then \
        echo "DELTA_VERSION=${DELTA_VERSION} but uv.lock has delta-spark ${wheel_delta}" >&2; exit 1; \
    fi; \
    if [ ! -f "${jars}/hadoop-client-api-${HADOOP_VERSION}.jar" ]; then \
        echo "HADOOP_VERSION=${HADOOP_VERSION} does not match pyspark's jars:" >&2; \
        printf '%s\n' "${jars}"/hadoop-client-api-*.jar >&2; exit 1; \
    fi; \
    sdk="${AWS_SDK_VERSION}"; \
    if [ -z "${sdk}" ]; then \
        sdk="$(curl -fsSL "${MAVEN_REPO}/org/apache/hadoop/hadoop-project/${HADOOP_VERSION}/hadoop-project-${HADOOP_VERSION}.pom" \
            | sed -n 's:.*<aws-java-sdk-v2.version>\(.*\)</aws-java-sdk-v2.version>.*:\1:p' | head -n 1)"; \
        test -n "${sdk}"; \
    fi; \
    fetch() { \
        path="$1"; sha256="$2"; dest="${jars}/$(basename "${path}")"; \
        curl -fsSL --retry 3 -o "${dest}" "${MAVEN_REPO}/${path}"; \
        echo "$(curl -fsSL --retry 3 "${MAVEN_REPO}/${path}.sha1" | cut -d ' ' -f 1)  ${dest}" | sha1sum -c -; \
        if [ -n "${sha256}" ]; then echo "${sha256}  ${dest}" | sha256sum -c -; fi; \
    }; \
    fetch "io/delta/delta-spark_${SCALA_BINARY_VERSION}/${DELTA_VERSION}/delta-spark_${SCALA_BINARY_VERSION}-${DELTA_VERSION}.jar" "${DELTA_SPARK_SHA256}"; \
    fetch "io/delta/delta-storage/${DELTA_VERSION}/delta-storage-${DELTA_VERSION}.jar" "${DELTA_STORAGE_SHA256}"; \
    fetch "org/apache/hadoop/hadoop-aws/${HADOOP_VERSION}/hadoop-aws-${HADOOP_VERSION}.jar" "${HADOOP_AWS_SHA256}"; \
    fetch "software/amazon/awssdk/bundle/${sdk}/bundle-${sdk}.jar" "${AWS_SDK_BUNDLE_SHA256}"

# The project itself (editable, so dags/ and jobs/ import the same regrow package).
COPY include/ include/
COPY dags/ dags/
COPY jobs/ jobs/
COPY params.yaml ./
COPY docker/entrypoint.sh /usr/local/bin/regrow-entrypoint
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && python -c "from regrow.orchestration.spark import delta_connector_jars; assert delta_connector_jars()"

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
