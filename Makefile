# progressive.delivery developer entry points. `make test` and `make demo`
# do their own set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: help deps venv controlplane up down status sanity unit integration test demo lint clean chaos bench

help:
	@echo "make test      sanity + unit + integration tests (builds and starts the local cluster itself)"
	@echo "make demo      local cluster + sample app"
	@echo "make chaos     the whole fault-injection suite (make test runs its first tries)"
	@echo "make bench     benchmarks against a hand-rolled playbook and Flagger (docs/performance.md)"
	@echo "make up/down   start/stop the long-lived dev cluster (hack/pdcluster.py)"

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.stamp

# ansible-lint lives in its own venv: its dependency pins must not move the collection's.
LINT_VENV ?= .venv-lint
$(LINT_VENV)/.stamp:
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q ansible-lint==26.10.1 ansible-core==2.19.14
	touch $@

lint: $(LINT_VENV)/.stamp
	$(LINT_VENV)/bin/ansible-lint roles playbooks

deps: venv
	hack/install-deps.sh

controlplane: deps
	hack/controlplane/build.sh

up: controlplane
	$(PY) hack/pdcluster.py up

down:
	$(PY) hack/pdcluster.py down --all

status:
	$(PY) hack/pdcluster.py status

sanity: venv
	VENV=$(VENV) hack/sanity.sh

unit: venv
	$(PYTEST) tests/unit -q

integration: controlplane
	$(PYTEST) tests/integration -q

test: controlplane
	$(MAKE) sanity
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) integration

# Every try of every fault (kill -9 over 50 seeds, ...); prints the table of faults and outcomes.
chaos: controlplane
	PD_CHAOS=full PD_TEST_CLUSTER_NAME=$${PD_TEST_CLUSTER_NAME:-chaos} $(PYTEST) tests/integration/chaos -q

# Benchmarks of issue 8, one at a time (they time things): build/bench/*.json and build/bench/summary.md.
bench: controlplane
	$(PY) bench/run.py

demo: controlplane
	$(PY) hack/demo.py

clean: down
	rm -rf build .local tests/output .ansible
