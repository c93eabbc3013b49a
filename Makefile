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

test: $(STAMP) redis
	$(BIN)/pytest

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
