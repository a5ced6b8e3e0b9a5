# Two entry points: `make demo` and `make test`. Each creates or updates .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: a CPU build where one is offered, never a CUDA download by accident
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/causalscope demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# two processes, each a whole test file at a time (a file's fixtures are made once): the
# Ray tests wait on processes much of the time, and the other process fills the cores meanwhile
test: lint browser
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

# The report's browser test needs a Chromium. Under CI (CI set) as root on Debian, Debian's
# chromium is installed when missing; anywhere else install it yourself (`apt-get install
# chromium`), or that one test skips and says why.
browser:
	@if [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& ! command -v chromium >/dev/null; then \
		echo "installing Debian's chromium for the report's browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium >/dev/null) \
			|| echo "chromium could not be installed: the browser test will skip"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
