# cnnctl developer tasks. `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch pair this project is tested with; override for another build, e.g.
#   make install TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format bench clean docs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/pip install $(TORCH)
	@# the installed torch pair is pinned for everything after it: no extra may pull another torch
	$(BIN)/python -c "import torch, torchvision; print(f\"torch=={torch.__version__.split('+')[0]}\ntorchvision=={torchvision.__version__.split('+')[0]}\")" > $(VENV)/constraints.txt
	$(BIN)/pip install -c $(VENV)/constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: install
	@rm -rf demo && mkdir -p demo
	$(BIN)/cnnctl train configs/demo.yaml --set output.dir=demo/runs --name demo
	$(BIN)/cnnctl evaluate demo/runs/demo --json demo/eval.json
	$(BIN)/cnnctl data synth demo/images --per-class 5 --seed 123
	$(BIN)/cnnctl predict demo/runs/demo demo/images --top-k 2 --out demo/predictions.csv --show 8

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check cnnctl tests bench
	$(BIN)/ruff format --check cnnctl tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix cnnctl tests bench
	$(BIN)/ruff format cnnctl tests bench

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf demo runs .pytest_cache .mypy_cache .ruff_cache

docs: install
	$(BIN)/python -m cnnctl.config.docs > docs/config.md
