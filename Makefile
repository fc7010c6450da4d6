# The two commands of the README: `make demo` (the main job on its embedded default: synthetic data,
# SQLite, CPU) and `make test`. Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DATA := datasets/demo

.PHONY: install test-deps demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/hpo data synth $(DEMO_DATA)/raw --cows 240 --pigs 80 --scale 0.1 --seed 0
	$(BIN)/hpo data prepare $(DEMO_DATA)/raw $(DEMO_DATA)
	$(BIN)/hpo launch --study demo --workers 2
	$(BIN)/hpo export --study demo -o runs/demo/hyp.yaml
	$(BIN)/hpo status --study demo

# System tools the tests drive (chromium, chromedriver, docker-compose, shellcheck): installed from
# Debian when missing, silent when present.
test-deps:
	@bash tools/test-deps.sh

test: install test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf runs datasets/demo storage/hpo.db storage/hpo.db-* storage/artifacts
