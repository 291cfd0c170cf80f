# Baton: `make run` starts the engine and runs a demo; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run in WORKERS processes (pytest-xdist), a test file each at a time: the end-to-end tests
# wait on engines far more than they compute, so two at once halve `make test` on two cores.
# WORKERS=0 runs them in this process, one after another.
WORKERS ?= 2
PARALLEL := -n $(WORKERS) --dist loadfile
MEMBERS := libs/common/pyproject.toml libs/cli/pyproject.toml $(wildcard services/*/pyproject.toml)

.DEFAULT_GOAL := help
.PHONY: help install browser run up down test test-unit test-integration test-e2e test-clock-ahead fuzz screenshots docs lint format bench bench-planner bench-llm bench-quick bench-soak bench-idle bench-learning bench-list bench-rebuild bench-hops bench-sweep bench-waiting bench-submit bench-saturation clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt $(MEMBERS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Baton needs Python 3.11+"' \
		|| { echo "Baton needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the workspace (every service, editable) and dev tools

browser: ## Debian's Chromium for the dashboard tests (apt, as root); without it they skip, saying why
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium (dashboard tests)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
	      || echo "could not install chromium: the dashboard tests will skip"; \
	  else echo "no chromium (and no root apt-get): the dashboard tests will skip"; fi; }

# ONE_PROCESS=1: every service in one process (`baton up --one-process`: less memory, not for production)
UP_FLAGS = $(if $(filter-out 0,$(ONE_PROCESS)),--one-process)

run: $(STAMP) ## start the whole engine on its embedded default and run a demo request (Ctrl-C stops; ONE_PROCESS=1: one process)
	$(BIN)/baton up --demo $(UP_FLAGS)

up: $(STAMP) ## start the whole engine in the foreground (no demo; ONE_PROCESS=1: one process)
	$(BIN)/baton up $(UP_FLAGS)

down: ## stop an engine started with `make up` / `make run` in another terminal
	@pid=$$($(BIN)/python -c 'import json;print(json.load(open(".baton/runtime.json"))["supervisor"])' 2>/dev/null) \
		&& kill -TERM $$pid && echo "stopping Baton ($$pid)" || echo "Baton is not running"

test: $(STAMP) browser ## run unit, integration and end-to-end tests (servers are started as needed)
	$(BIN)/pytest -q $(PARALLEL)

test-unit: $(STAMP) ## unit tests only
	$(BIN)/pytest -q -m "not integration and not e2e"

test-clock-ahead: $(STAMP) ## unit and integration tests with the clock a year ahead: a date bomb fails now
	$(BIN)/pytest -q $(PARALLEL) -m "not e2e" --clock-ahead-days=365

test-e2e: $(STAMP) browser ## end-to-end tests only (the engine as processes)
	$(BIN)/pytest -q $(PARALLEL) -m e2e

fuzz: $(STAMP) ## fuzz the OpenAPI document (schemathesis, own engine); EXAMPLES=100 for a longer run
	BATON_FUZZ_EXAMPLES=$${EXAMPLES:-50} $(BIN)/pytest -q tests/e2e/test_openapi_fuzz.py

screenshots: $(STAMP) browser ## the dashboard's screenshots in docs/ (from its browser tests)
	BATON_SCREENSHOTS=$(CURDIR)/docs $(BIN)/pytest -q tests/e2e/test_dashboard.py \
		tests/e2e/test_agents_dashboard.py tests/e2e/test_webhooks.py::test_dashboard_webhooks_page

docs: $(STAMP) ## build the documentation site (strict) into site/; the CLI and API references come from the code
	@# not --quiet: it hides the warnings that --strict counts, and the build would pass them.
	@# NO_MKDOCS_2_WARNING: Material's end-of-life notice (May 2027; see docs/development.md).
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP) ## ruff (lint + format check), mypy and the import contracts (no circles, layers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src services/*/src libs/cli/src
	$(BIN)/lint-imports

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## benchmarks with figures (up to 30 min); see docs/benchmarks.md
	$(BIN)/python -m bench.run --full
	$(BIN)/python -m bench.rebuild
	$(BIN)/python -m bench.idle
	$(BIN)/python -m bench.waiting
	$(BIN)/python -m bench.submit_path
	$(BIN)/python -m bench.learning_bench
	$(BIN)/python -m bench.llm_repairs

bench-learning: $(STAMP) ## 54 requests in words twice: plan reuse, cache hits, failure patterns (docs/context.md)
	$(BIN)/python -m bench.learning_bench

bench-planner: $(STAMP) ## the planner quality suite only: pass rate (offline; Gemini with a key)
	$(BIN)/python -m bench.planner_quality

bench-llm: $(STAMP) ## the LLM planner's repair rate against a fake OpenAI-compatible server (scripted answers)
	$(BIN)/python -m bench.llm_repairs

bench-quick: $(STAMP) ## the same benchmark code paths, small sizes (< 2 min)
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.waiting --quick --no-write
	$(BIN)/python -m bench.submit_path --requests 100 --rounds 1

bench-list: $(STAMP) ## the executions list at 100,000 executions: first and last page (docs/benchmarks.md)
	$(BIN)/python -m bench.list_pages

bench-rebuild: $(STAMP) ## rebuild the views of 100,000 executions written straight into the stores (docs/benchmarks.md)
	$(BIN)/python -m bench.rebuild

bench-hops: $(STAMP) ## a chain of worker steps hop by hop and a chain of pure steps, each beside the commit floor of its own seconds (docs/benchmarks.md)
	$(BIN)/python -m bench.worker_path 30 3

bench-saturation: $(STAMP) ## saturation through workers beside each peer's form, rounds alternated: steps/s, CPU per step, ratio to the best peer (docs/benchmarks.md)
	$(BIN)/python -m bench.saturation --n 500 --rounds 2 --unbounded

bench-submit: $(STAMP) ## the gateway's path of POST /v1/executions before the intake commit, beside the commit floor (docs/benchmarks.md)
	$(BIN)/python -m bench.submit_path

bench-idle: $(STAMP) ## an idle `baton up`, both modes (one process per service, --one-process): memory and CPU (docs/benchmarks.md)
	$(BIN)/python -m bench.idle

bench-waiting: $(STAMP) ## 10,000 executions on gates + 10,000 on durable sleeps: memory, idle CPU, drain; a burst (docs/benchmarks.md)
	$(BIN)/python -m bench.waiting

bench-soak: $(STAMP) ## ten minutes of steady load (10 executions/s), 2-minute retention, summaries folded after 4, audit archived after 3: latency, memory and disk drift (docs/benchmarks.md)
	$(BIN)/python -m bench.soak --minutes 10 --rate 10 --retention-minutes 2 --summary-minutes 4 --audit-minutes 3

bench-sweep: $(STAMP) ## the retention sweep alone: expired executions archived and removed per second (docs/benchmarks.md)
	$(BIN)/python -m bench.sweep --executions 600

clean: ## remove the virtualenv and local engine data
	rm -rf $(VENV) .baton
