# ct-airflow: local development targets. Production runs docker-compose.yaml.
#
#   make venv    .venv with the pinned requirements (requirements-dev.txt, constraints.txt)
#   make run     Airflow standalone + embedded PostgreSQL + local Kafka-compatible broker
#   make demo    the same, ingesting from 3 local CT logs into data/demo
#   make stop    stop what make run / make demo (or bin/airflow) started, from any shell
#   make test    the test suite
#   make chromium  Debian's headless Chromium for the browser test (make test installs it)
#   make bench   benchmarks that print figures (bench/results/*.json): scorer vs phishing_catcher, verification cost, decode vs construct+pyOpenSSL, catch-up through Airflow, the local log server's cost, ct_watch's matching against a 1,000-item watchlist vs one item at a time, compaction of a busy day on a local disk and on S3 (streamed vs the whole day in memory), the CT firehose soak (40 logs, 16 tiled, 3,200 entries/s under airflow standalone; with and without downstream; short mode), live freshness while an Airflow backfill of a busy log's day of history runs (4 + 4 minutes), the chaos soak (40 logs at 1,000 entries/s with downstream, 5 minutes of faults together: components, task processes, broker, PostgreSQL, a failing and a lying log; audited at the end)
#   make bench-full  the same with the decode, catch-up, compaction, soak, backfill and chaos benchmarks in full mode (make bench BENCH_FLAGS=--full; the chaos soak 20 minutes), plus the uniform 1,000 entries/s soak
#   make lint    ruff and mypy on plugins/ and dags/ (configured in pyproject.toml); CI runs it before the tests
#   make clean   remove .run/ (PostgreSQL data, pid files, logs), .airflow/ and the data/ lake
#   make secrets  write the secrets docker-compose.yaml needs (and AIRFLOW_UID) to .env, mode 0600, where missing; never replaces a value
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv run demo stop status test bench bench-full lint clean chromium

help:
	@grep '^#   make' Makefile | sed 's/^# //'

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	$(VPY) -m pip install -q -e . --no-deps
	touch $@

run: $(STAMP)
	$(VPY) -m ctlib.localsvc.run

demo: $(STAMP)
	$(VPY) -m ctlib.localsvc.run --demo

stop:
	@if [[ -x $(VPY) ]]; then $(VPY) -m ctlib.localsvc.run stop; else echo "no $(VENV): nothing to stop"; fi

status: $(STAMP)
	@$(VPY) -m ctlib.localsvc.run status

# pytest exits 5 when it collects no test: that fails here too.
test: $(STAMP) chromium
	$(VPY) -m pytest tests -q

# Headless Chromium from Debian's packages for the browser test (tests/e2e/test_ui.py, driven
# by Playwright; Playwright's own browser downloads are never used). Installed when missing.
chromium:
	@if [[ ! -x /usr/bin/chromium ]]; then \
	  echo "installing Debian's chromium for the browser test..."; \
	  sudo=; [[ $$(id -u) == 0 ]] || sudo=sudo; \
	  $$sudo apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version 2>/dev/null | grep -q . || { echo "no working /usr/bin/chromium" >&2; exit 1; }

# BENCH_FLAGS (e.g. --full) goes to the decode, catch-up, watch, compaction, soak, backfill and chaos benchmarks.
bench: $(STAMP)
	$(VPY) bench/score_eval.py
	$(VPY) bench/verify_cost.py
	$(VPY) bench/decode_bench.py $(BENCH_FLAGS)
	$(VPY) bench/catchup_bench.py $(BENCH_FLAGS)
	$(VPY) bench/logserver_bench.py
	$(VPY) bench/watch_bench.py $(BENCH_FLAGS)
	$(VPY) bench/compaction_bench.py $(BENCH_FLAGS)
	$(VPY) bench/soak_bench.py --profile firehose $(BENCH_FLAGS)
	$(VPY) bench/soak_bench.py --profile firehose --with-downstream $(BENCH_FLAGS)
	@if [[ "$(BENCH_FLAGS)" == *--full* ]]; then $(VPY) bench/soak_bench.py --full; fi
	$(VPY) bench/backfill_bench.py $(BENCH_FLAGS)
	$(VPY) bench/chaos_soak.py $(BENCH_FLAGS)

bench-full:
	$(MAKE) bench BENCH_FLAGS=--full

lint: $(STAMP)
	$(VPY) -m ruff check plugins dags
	$(VPY) -m mypy

clean: stop
	rm -rf .run .airflow data

# Standard library only: runs with any python3, without the venv (a Docker host needs neither).
.PHONY: secrets
secrets:
	PYTHONPATH=plugins $(PYTHON) -m ctlib.deploy.secrets init
