# The two entry points of the README's quick start. Both set everything up first
# (tools/setup.sh is idempotent and fast when nothing changed).
PY := .venv/bin/python
WORKLOAD ?= hardware/workloads/smollm2-135m-ctx1024-steps32.csv
PRESET ?= eighth

.PHONY: setup run test test-all clean

setup:
	bash tools/setup.sh

run: setup
	$(PY) run.py $(WORKLOAD) --preset $(PRESET)

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

clean:
	rm -rf build results
