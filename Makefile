# Two commands do all the set-up on a fresh Debian/Ubuntu machine:
#   make demo   - start embedded backends, push tasks through each, compare, stop
#   make test   - the test suite (real redis-server processes, no mocks)
# Both create/refresh .venv by themselves and install redis-server when missing (as root).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean redis notebook

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian run 'apt-get install -y python3-venv'"; exit 2; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

redis:
	@.ci/ensure-redis

demo: $(STAMP) redis
	$(BIN)/bench demo

# 2 pytest-xdist workers, one test file at a time each: the Docker tests share one daemon and compose cluster in
# one file (--dist loadgroup would say that per test, but xdist 3.8 ignores its marks on pytest 9.2: xdist #1386).
# Files go out slowest first (tests/conftest.py SLOW_FILES_FIRST), not by their number of tests.
# PYTEST_WORKERS=0 runs in this one process.
PYTEST_WORKERS ?= 2
test: $(STAMP) redis
	$(BIN)/pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

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
	rm -rf $(VENV) .bench .pytest_cache .ruff_cache .mypy_cache
