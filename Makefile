# Servicehub: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PG_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
# pytest-xdist workers for `make test` (whole files to a worker, in xdist's
# order: those with the most tests first, so the one-test resilience suite
# runs last and alone; started first instead it slowed the training tests
# beside it, and on clean clones the two orders took 25-27 min of tests
# either way, 2026-12-01); 0 runs the tests in this process, one by one.
TEST_WORKERS ?= 2
export RASA_TELEMETRY_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

-include mk/*.mk

.PHONY: help install run test bench chromium compose-check clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first: sentence-transformers would pull a CUDA one.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the hub

chromium: ## Debian packages the tests use: chromium (Playwright drives it), docker-compose (validates the compose file), dovecot (a real IMAP server), haproxy (checks the balancer config)
	@if ! command -v chromium >/dev/null || ! command -v docker-compose >/dev/null || ! command -v dovecot >/dev/null || ! test -x /usr/sbin/haproxy; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose dovecot-imapd haproxy >/dev/null; fi

run: install rasa-model ## set everything up and start the hub with embedded defaults
	$(VENV)/bin/hub init
	$(VENV)/bin/hub db upgrade
	$(VENV)/bin/hub users bootstrap
	$(VENV)/bin/hub serve

test: install lint chromium rasa-model ## install what tests need, lint, and run them all
	@if $(PY) -c "import asyncio, asyncpg; asyncio.run(asyncpg.connect('postgresql://postgres@127.0.0.1:5432/test', timeout=3))" 2>/dev/null; then \
		export HUB_TEST_DATABASE_URLS="sqlite,$(PG_TEST_URL)"; echo "storage suite: SQLite and PostgreSQL"; \
	elif [ -n "$$CI" ]; then echo "PostgreSQL at 127.0.0.1:5432 is not reachable; CI must test it" >&2; exit 1; \
	else export HUB_TEST_DATABASE_URLS=sqlite; echo "storage suite: SQLite only (PostgreSQL not reachable)"; fi; \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

bench: install ## run every benchmark in quick mode
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script --quick || exit 1; done

compose-check: ## validate docker-compose.yml (needs the docker compose plugin)
	docker compose config --quiet

clean: ## remove venvs, data and caches
	rm -rf $(VENV) .venv-rasa data .pytest_cache
