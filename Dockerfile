# syntax=docker/dockerfile:1
# regrow's image: the official Apache Airflow image (its Python, its `airflow` user, uid
# 50000 in group 0, AIRFLOW_HOME=/opt/airflow) plus Java 17 for Spark, regrow's locked
# Python environment, the pinned Delta Lake and hadoop-aws jars, and regrow's entrypoint.
# One image for the API server, the scheduler (LocalExecutor: the tasks run there), the DAG
# processor, the triggerer and the Spark jobs they run (docker-compose.yaml runs them all).
#
#   docker build -t regrow --build-arg REGROW_GIT_COMMIT="$(git rev-parse HEAD)" .
#   docker run --rm regrow airflow dags list
#
# AIRFLOW_VERSION is apache-airflow's version in uv.lock (tests/unit/test_docker_files.py
# checks it), so the base image's Airflow and the locked one are the same release.
#
# How the locked set is installed (docker/install.sh, which CI also runs outside Docker):
# the official image keeps Airflow and its extras in a virtualenv at /home/airflow/.local,
# which is on PATH and is $VIRTUAL_ENV. `uv sync --frozen --no-dev` runs INTO that venv
# (UV_PROJECT_ENVIRONMENT): a sync is exact, so it keeps the image's interpreter and removes
# every package uv.lock does not list (the image's other providers and extras), installs
# the locked versions of the rest, and regrow. A second venv beside it would leave two
# Airflows in the image, the image's on $VIRTUAL_ENV and ours; this way there is one, the
# locked one, and the image's PATH, sudo path and Airflow user setup stay as they are.

ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
ARG PYTHON_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Java 17 for Spark (the official image is Debian bookworm), and ps for Spark's scripts.
# Debian security updates arrive under the same package names: versions are not pinned.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17 \
    && mkdir -p /opt/regrow \
    && chown airflow:0 /opt/regrow \
    && chmod 775 /opt/regrow

COPY --from=uv /uv /uvx /usr/local/bin/
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/regrow-entrypoint

# The image's airflow user (uid 50000, group 0).
USER 50000

ENV REGROW_HOME=/opt/regrow \
    REGROW_JARS_DIR=/opt/regrow/jars \
    JAVA_HOME=/usr/lib/jvm/java-17 \
    UV_PROJECT_ENVIRONMENT=/home/airflow/.local \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_CACHE_DIR=/tmp/.cache/uv \
    PYTHONUNBUFFERED=1
ENV SPARK_HOME=/home/airflow/.local/lib/python${PYTHON_VERSION}/site-packages/pyspark \
    PYSPARK_PYTHON=/home/airflow/.local/bin/python \
    PYSPARK_DRIVER_PYTHON=/home/airflow/.local/bin/python

WORKDIR /opt/regrow

# The locked dependencies and the jars first: this layer outlives changes of regrow's code.
# The jars (~700 MB: Delta Lake's connector and Kernel, hadoop-aws and the AWS SDK bundle it
# was built against, each checked against its pinned SHA-1) are fetched into a BuildKit
# cache, so a rebuild downloads nothing, and copied into $REGROW_JARS_DIR, where every regrow
# Spark session finds them: `lakehouse.engine: auto` picks delta-spark in this image.
ARG REGROW_MAVEN_REPO=https://repo1.maven.org/maven2
COPY --chown=airflow:0 pyproject.toml uv.lock README.md .python-version ./
COPY --chown=airflow:0 docker/install.sh docker/install.sh
COPY --chown=airflow:0 include/regrow/orchestration/jars.py include/regrow/orchestration/jars.py
RUN --mount=type=cache,target=/tmp/.cache/uv,uid=50000,gid=0 \
    --mount=type=cache,target=/tmp/.cache/regrow-jars,uid=50000,gid=0 \
    REGROW_MAVEN_REPO="${REGROW_MAVEN_REPO}" bash docker/install.sh --no-project \
        --venv /home/airflow/.local --jars "${REGROW_JARS_DIR}" \
        --jars-cache /tmp/.cache/regrow-jars

# regrow itself, editable from /opt/regrow (its DAG helpers find jobs/ beside include/), and
# what it reads at run time: the DAGs, the Spark jobs, the expectation suites, params.yaml.
COPY --chown=airflow:0 include/ include/
COPY --chown=airflow:0 dags/ dags/
COPY --chown=airflow:0 jobs/ jobs/
COPY --chown=airflow:0 plugins/ plugins/
COPY --chown=airflow:0 expectations/ expectations/
COPY --chown=airflow:0 params.yaml dvc.yaml ./
COPY --chown=airflow:0 docker/stack_init.py docker/stack_init.py
RUN --mount=type=cache,target=/tmp/.cache/uv,uid=50000,gid=0 \
    bash docker/install.sh --venv /home/airflow/.local --no-jars \
    && python -c "from regrow.orchestration import jars; assert jars.present(jars.DELTA) and jars.present(jars.S3A)" \
    && test "$(airflow version 2>/dev/null | tail -n 1)" = "${AIRFLOW_VERSION}" \
    && mkdir -p data reports /opt/airflow/config \
    && chmod -R g+rwX data reports /opt/airflow/config

# The commit that regrow records as lineage on every model version (an image has no .git).
ARG REGROW_GIT_COMMIT=unknown
ENV REGROW_GIT_COMMIT=${REGROW_GIT_COMMIT} \
    REGROW_PARAMS=/opt/regrow/params.yaml \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/regrow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/regrow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[*]"}'

# The official image's dumb-init forwards signals to the process group (DUMB_INIT_SETSID=1);
# regrow's entrypoint migrates the metadata database when _AIRFLOW_DB_MIGRATE=true, then
# execs the command (a bare Airflow subcommand such as `scheduler` runs as `airflow ...`).
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/usr/local/bin/regrow-entrypoint"]
CMD ["airflow", "version"]
