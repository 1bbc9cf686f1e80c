# Entry points for people and CI.  Everything runs as root on Debian 12;
# `make deps` (run by every other target) installs what is missing.
PYTHON := .venv/bin/python
PYTEST := $(PYTHON) -m pytest -q

.PHONY: all venv deps test unit functional system bench demo clean

all: test

venv deps:
	@bash scripts/install-deps.sh

test: deps
	$(PYTEST) tests

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
