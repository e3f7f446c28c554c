# regrow: every target bootstraps what it needs on a fresh machine that has Python 3.11,
# Java 17 and make. `make demo` runs the pipeline on params.yaml; `make test` runs the tests.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv from PATH, else the copy `make setup` installs into ~/.local/bin.
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# Never download a Python: use the machine's 3.11 (see .python-version).
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --frozen
PYTEST_ARGS ?=
# JARS=skip: no JVM jars (no Maven here): the delta-rs engine only, and the delta-spark tests fail.
JARS ?= fetch
# `make airflow`: the port of the Airflow UI and API (127.0.0.1).
AIRFLOW_PORT ?= 8080

.PHONY: help setup jars check-java demo demo-broken-feed test test-stack bench bench-quick lint mlflow clean spark-start spark-stop airflow airflow-stop airflow-backfill

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: check-java .venv/.synced jars ## install uv if missing, the locked environment (uv sync --frozen --compile-bytecode), the JVM jars

jars: .venv/.synced ## fetch the pinned Delta Lake and hadoop-aws jars once (~/.cache/regrow/jars; JARS=skip: none)
ifeq ($(JARS),skip)
	@echo "JARS=skip: no Delta Lake JVM connector; lakehouse.engine auto uses delta-rs"
else
	@$(RUN) regrow jars fetch || { echo "make setup JARS=skip goes on without them (the delta-rs engine only)"; exit 1; }
endif

# --compile-bytecode: the installed packages' .pyc written once, here. Python writes none
# itself where PYTHONDONTWRITEBYTECODE is set (this machine sets it; many images do):
# then every process compiled what it imported, e.g. 8.5 s to import great_expectations
# instead of 3.7 s, in each CLI stage, Airflow task process and Spark driver.
.venv/.synced: pyproject.toml uv.lock
	@command -v $(UV) >/dev/null 2>&1 || { \
	  echo "uv not found: installing it with pip (python3 -m pip install --user uv)"; \
	  python3 -m pip install --user --quiet uv || python3 -m pip install --user --quiet --break-system-packages uv; }
	$(UV) sync --frozen --compile-bytecode
	@touch $@

check-java: ## Spark needs Java 17 (or 21)
	@command -v java >/dev/null 2>&1 || { \
	  echo "Java not found. Spark needs a JDK/JRE 17: e.g. 'apt-get install openjdk-17-jre-headless'"; \
	  echo "(Debian/Ubuntu), 'brew install openjdk@17' (macOS), then make sure 'java' is on PATH."; exit 1; }
	@java -version 2>&1 | head -n 1 | grep -Eq '"(17|21)[."]' || { \
	  echo "Spark 4 needs Java 17 or 21; found: $$(java -version 2>&1 | head -n 1)"; exit 1; }

demo: setup ## 30 simulated days (drift on day 24): backfill + the ingest DAG, a champion, the daily loop (score, monitor, decide, retrain)
	$(RUN) python -m regrow.demo

demo-broken-feed: setup ## 4 days whose last has a broken feed: that day is blocked with its reason
	$(RUN) python -m regrow.demo --scenario broken_feed --days 4 --workdir data/demo-broken-feed

test: setup browser ## run the whole test suite (fails when no test is collected)
	$(RUN) pytest $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; fi; \
	  exit $$status

test-stack: setup ## the tests that run a real Airflow scheduler (backfills) and a Spark standalone cluster (~30 minutes on 2 cores; make test leaves them out)
	$(RUN) pytest -m stack $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; fi; \
	  exit $$status

.PHONY: browser
browser: ## Debian's chromium for the UI test (Playwright drives it)
	@command -v chromium >/dev/null 2>&1 || { \
	  sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }

bench: setup ## run the benchmarks; results go to bench/results/ (hours: the replay is a year of three scenarios)
	$(RUN) python -m bench

bench-quick: setup ## the replay benchmark on small sizes (a few minutes); results go to bench/results/quick/
	REGROW_BENCH_REPLAY_DAYS=40 REGROW_BENCH_REPLAY_EVENTS=1000 REGROW_BENCH_REPLAY_SCENARIOS=concept_drift \
	  $(RUN) python -m bench --only replay --results bench/results/quick

spark-start: setup ## start the local Spark Connect server (127.0.0.1:15002): one warm JVM for the DAG tasks and the CLI
	$(RUN) regrow spark start

spark-stop: ## stop the local Spark Connect server
	$(RUN) regrow spark stop

airflow: setup ## starts Airflow locally (api-server, scheduler, dag-processor, triggerer): prints the URL, the user and where the password is (AIRFLOW_PORT=8080)
	$(RUN) regrow airflow up --port $(AIRFLOW_PORT)

airflow-stop: ## stops what `make airflow` started
	$(RUN) regrow airflow down

airflow-backfill: ## backfills regrow_ingest FROM=YYYY-MM-DD TO=YYYY-MM-DD on `make airflow`'s scheduler (REPROCESS=completed reruns days done)
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make airflow-backfill FROM=2026-01-01 TO=2026-01-30"; exit 2; }
	$(RUN) regrow airflow backfill --from $(FROM) --to $(TO) --reprocess $(or $(REPROCESS),none)

mlflow: setup ## the MLflow UI on the project's store (http://127.0.0.1:5000; MLFLOW_PORT=...)
	$(RUN) regrow mlflow-ui --port $(or $(MLFLOW_PORT),5000)

lint: setup ## ruff (lint and format), the import layers of pyproject.toml (lint-imports), hadolint on the Dockerfile, docker-compose.yaml (config -q)
	$(RUN) ruff check include jobs dags tests bench plugins docker
	$(RUN) ruff format --check include jobs dags tests bench plugins docker
	$(RUN) lint-imports
	$(RUN) hadolint Dockerfile
	@$(MAKE) --no-print-directory compose-config

# docker-compose.yaml checked offline with .env.example's empty secrets filled in: `docker
# compose` when it is there, else Debian's docker-compose (v1), installed by apt as root.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
.PHONY: compose-config
compose-config: ## validate docker-compose.yaml (docker compose config -q; no Docker engine needed)
	@command -v $(firstword $(COMPOSE)) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing docker-compose (apt) to check docker-compose.yaml"; \
	    { apt-get install -y -qq docker-compose >/dev/null 2>&1 || \
	      { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }; }; \
	  else echo "no docker compose / docker-compose: install one (e.g. apt-get install docker-compose) to check docker-compose.yaml"; exit 1; fi; }
	@env_file=$$(mktemp); sed -E 's/^([A-Z_]+)=$$/\1=placeholder/' .env.example > $$env_file; \
	  $(COMPOSE) --env-file $$env_file -f docker-compose.yaml config -q; status=$$?; rm -f $$env_file; \
	  if [ $$status -eq 0 ]; then echo "docker-compose.yaml: valid ($(COMPOSE) config)"; fi; exit $$status

clean: ## remove generated data, reports and the local Airflow home
	rm -rf data reports .airflow airflow_home spark-warehouse mlflow.db mlartifacts .spark-connect
