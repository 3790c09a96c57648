# Two entry points: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build keeps the install small and fast; the package itself accepts any torch>=2.1.
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
OUT := build/demo

.PHONY: demo test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q "$(TORCH_CPU)" || \
		$(BIN)/python -m pip install -q "$(TORCH_CPU)" --index-url "$(TORCH_INDEX)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	rm -rf $(OUT) && mkdir -p $(OUT)
	$(BIN)/python fixtures/make_fixtures.py --out $(OUT)/fixtures
	$(BIN)/embsurgeon inspect $(OUT)/fixtures/tiny-bert
	$(BIN)/embsurgeon convert $(OUT)/fixtures/tiny-bert $(OUT)/tiny-bert.safetensors
	$(BIN)/embsurgeon inspect $(OUT)/tiny-bert.safetensors
	$(BIN)/embsurgeon convert $(OUT)/fixtures/glove.txt $(OUT)/glove.w2v.bin --to word2vec-bin
	$(BIN)/embsurgeon inspect $(OUT)/glove.w2v.bin
	@echo "demo outputs are in $(OUT)/"

test: $(VENV)/.installed
	$(BIN)/ruff check embsurgeon tests benchmarks fixtures
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
