# Two entry points for a fresh machine: `make demo` and `make test`. Each builds .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned here (not in pyproject) so that CPU machines take the local CPU wheels and GPU users
# keep their own torch.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test fuzz bench notebooks clean

$(BIN)/xlvlm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q $(TORCH_PINS) -e '.[metrics,serve,test]'
	touch $(BIN)/xlvlm

setup: $(BIN)/xlvlm

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/xlvlm demo --out runs/demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests

# The hostile-input suite with many examples per command (make test runs a few), failures shrunk.
fuzz: setup
	HF_HUB_OFFLINE=1 XLVLM_FUZZ_EXAMPLES=200 $(BIN)/python -m pytest tests/hardening/test_hostile_suite.py tests/scale/test_fuzz.py

# Re-execute the example notebooks in place (commit them executed: tests/test_notebooks.py checks).
notebooks: setup
	cd notebooks && HF_HUB_OFFLINE=1 ../$(BIN)/python -c "import sys, nbformat; from nbclient import NotebookClient; \
	[(nb := nbformat.read(p, 4), NotebookClient(nb, timeout=120, kernel_name='python3', record_timing=False, \
	resources={'metadata': {'path': '.'}}).execute(), nbformat.write(nb, p)) for p in sys.argv[1:]]" *.ipynb
	rm -rf notebooks/runs

bench: setup
	$(BIN)/python bench/extract.py

clean:
	rm -rf $(VENV) runs .pytest_cache
