# ct-airflow: local development targets. Production runs docker-compose.yaml.
#
#   make venv    .venv with the pinned requirements (requirements-dev.txt, constraints.txt)
#   make run     Airflow standalone + embedded PostgreSQL + local Kafka-compatible broker
#   make demo    the same, ingesting from 3 local CT logs into data/demo
#   make stop    stop what make run / make demo (or bin/airflow) started, from any shell
#   make test    the test suite
#   make lint    byte-compile plugins/ and dags/
#   make clean   remove .run/ (PostgreSQL data, pid files, logs), .airflow/ and the data/ lake
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv run demo stop status test lint clean

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
test: $(STAMP)
	$(VPY) -m pytest tests -q

lint: $(STAMP)
	$(VPY) -m compileall -q plugins dags

clean: stop
	rm -rf .run .airflow data
