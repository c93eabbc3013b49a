# Two commands do all the set-up on a fresh Debian/Ubuntu machine:
#   make demo   - start embedded backends, push tasks through each, compare, stop
#   make test   - the test suite (real redis-server processes, no mocks)
# Both create/refresh .venv from the lock of tested versions (requirements/dev.txt) and install
# redis-server when missing (as root); make test also installs iptables and Docker (.ci/ensure-system).
#   make test-latest - the newest releases pyproject.toml allows, in .venv-latest (LATEST_TESTS=all: every test)
#   make lock        - re-resolve the lock after a change to pyproject.toml, keeping the tested pins
#   make lock-upgrade - every package to its newest allowed release (then make test, and commit the lock)

PYTHON ?= python3
VENV := .venv
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed-stamp
BIN := $(VENV)/bin
LATEST := .venv-latest
# The client-behaviour tests (marker `client`): error shapes, deadlines, what was sent, failover.
LATEST_TESTS ?= client

.PHONY: demo test test-latest bench lint clean redis notebook lock lock-upgrade

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian run 'apt-get install -y python3-venv'"; exit 2; }
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

redis:
	@.ci/ensure-redis

# uv resolves for every platform and Python >= 3.11 (--universal) with hashes; the existing pins are kept
# unless asked (lock-upgrade, or UPGRADE=redis for one package).
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" -q -o $(LOCK)
$(VENV)/bin/uv: $(STAMP)
	$(BIN)/pip install -q uv
lock: $(VENV)/bin/uv
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade-package $(UPGRADE))
lock-upgrade: $(VENV)/bin/uv
	$(UV_COMPILE) --upgrade

demo: $(STAMP) redis
	$(BIN)/bench demo

# 2 pytest-xdist workers, one test file at a time each: the Docker tests share one daemon and compose cluster in
# one file (--dist loadgroup would say that per test, but xdist 3.8 ignores its marks on pytest 9.2: xdist #1386).
# Files go out slowest first (tests/conftest.py SLOW_FILES_FIRST), not by their number of tests.
# PYTEST_WORKERS=0 runs in this one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	@.ci/ensure-system
	$(BIN)/pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# A fresh venv each time, so what it tests is what pip resolves today; a failure names the versions.
test-latest: redis
	@rm -rf $(LATEST)
	@$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	@$(LATEST)/bin/python .ci/versions $(LOCK)
	@$(LATEST)/bin/pytest -p no:cacheprovider $(if $(filter-out all,$(LATEST_TESTS)),-m $(LATEST_TESTS)) \
		-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		|| { echo "make test-latest FAILED with the newest releases: $$($(LATEST)/bin/python .ci/versions $(LOCK))"; exit 1; }

bench: $(STAMP) redis
	$(BIN)/pytest --benchmark-only

# JupyterLab on notebooks/explore-run.ipynb. It opens RUN (make notebook RUN=results/<run>), else the newest
# run under results/, else the committed sample, and says which in its first output. JUPYTER_ARGS=--no-browser on a server.
notebook: $(STAMP)
	$(if $(RUN),BENCH_RUN_DIR=$(abspath $(RUN))) $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) \
		$(JUPYTER_ARGS) notebooks/explore-run.ipynb

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy taskqueue bench locustfiles

clean:
	-$(BIN)/bench down 2>/dev/null
	rm -rf $(VENV) $(LATEST) .bench .pytest_cache .ruff_cache .mypy_cache
