# Entry points for people and CI.  Everything runs as root on Debian 12;
# `make deps` (run by every other target) installs what is missing.
PYTHON := .venv/bin/python
PYTEST := $(PYTHON) -m pytest -q

.PHONY: all venv deps lint test check unit functional system bench demo clean

all: test

venv deps:
	@bash scripts/install-deps.sh

# The linter (ruff, configured in ruff.toml) and the dead-code check
# (vulture; vulture_whitelist.py lists what only dynamic code uses).
lint: deps
	.venv/bin/ruff check .
	.venv/bin/vulture calicoctl tests bench scripts setup.py vulture_whitelist.py

# The whole suite; the 25 slowest tests are listed at the end.
test: deps lint
	$(PYTEST) --durations=25 tests

# Quick iterations (about 2 minutes): lint, the unit tier and the functional
# tests not marked slow (more than about 2 s each; make test runs them all).
check: deps lint
	$(PYTEST) -m "not slow" tests/unit tests/functional

# Subsets; pytest's exit 5 ("no tests collected") is not a failure here.
unit functional system: deps
	$(PYTEST) tests/$@ || [ $$? -eq 5 ]

bench: deps
	$(PYTHON) bench/run.py

demo: deps
	$(PYTHON) scripts/demo.py

clean:
	rm -rf .venv build dist *.egg-info .pytest_cache demo-out bench-out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
