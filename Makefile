# mobileblocks-edu: two commands (see README.md)
#   make book   create .venv if missing, install, build the HTML book into _build/html
#   make test   lint, unit tests + every lesson executed in fast mode (MBE_FAST=1)
# and the readers' other paths (run by .ci/run):
#   make test-oldest   unit tests on the lowest versions requirements.txt allows (zoo-wide export
#                      tests on one model of each family)
#   make test-colab    lessons 01 and 04 run the Colab way, on Colab's preinstalled versions
SHELL       := /bin/bash
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
SHARED_DATA ?= ../shared/datasets
JB_FLAGS    := --all -W --keep-going
# Idle OpenMP threads sleep instead of spinning: on a small or shared CPU, spinning threads
# slow training several-fold.
export OMP_WAIT_POLICY ?= PASSIVE

# An interpreter of version $(1): on PATH, else one that pyenv has installed; empty if neither.
find_python = $(shell for p in python$(1) $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/$(1).*/bin/python$(1) 2>/dev/null); do \
	"$$p" -c '' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

# The oldest supported interpreter (requires-python) with the lowest allowed packages.
OLDEST_PYTHON ?= $(or $(call find_python,3.10),$(PYTHON))
OLDEST_VENV   ?= .venv-oldest
# Colab's runtime (2026): Python 3.13 with these preinstalled; the lessons must not change them.
COLAB_PYTHON  ?= $(call find_python,3.13)
COLAB_VENV    ?= .venv-colab
COLAB_STACK   := torch==2.11.0 torchvision==0.26.0 ipython==7.34.0 ipywidgets==7.7.1 ipykernel==6.17.1 \
                 numpy matplotlib tqdm safetensors pillow opencv-python scikit-learn scipy nbclient nbformat

.PHONY: book test lint book-fast install data-link clean test-oldest test-colab sync-lessons student study-times

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# Offline copy of the datasets: link data -> ../shared/datasets when there is one and no data/ yet.
data-link:
	@if [ -z "$$MBE_DATA" ] && [ ! -e data ] && [ -n "$(SHARED_DATA)" ] && [ -d "$(SHARED_DATA)" ]; then \
		ln -s "$(SHARED_DATA)" data && echo "linked data -> $(SHARED_DATA)"; fi

# The published book: every notebook executed in normal mode.
book: install data-link
	$(BIN)/jupyter-book build . $(JB_FLAGS)

# The same book with every notebook in fast mode (CI), built into _build/fast.
book-fast: install data-link
	MBE_FAST=1 $(BIN)/jupyter-book build . $(JB_FLAGS) --path-output _build/fast

# Tests and lessons run on every core (pytest-xdist; a test file, or a lesson, stays on one worker).
PYTEST_JOBS ?= -n auto --dist loadfile

test: install data-link lint
	MBE_FAST=1 $(BIN)/python -m pytest $(PYTEST_JOBS) --nbmake --nbmake-timeout=300 tests lessons

# Lint and import order (settings in pyproject.toml); part of make test.
lint: install
	$(BIN)/ruff check mobileblocks_edu tests tools

# Every ">=" bound of requirements.txt's library lines, pinned: the lowest versions we claim.
$(OLDEST_VENV)/.installed: requirements.txt pyproject.toml
	rm -rf $(OLDEST_VENV)
	$(OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	sed -nE 's/^(torch|torchvision|numpy|matplotlib|tqdm|safetensors|torchinfo|grad-cam|ipywidgets|onnx|onnxruntime|onnxscript)>=([^,;# ]+).*/\1==\2/p' \
		requirements.txt > $(OLDEST_VENV)/lowest.txt
	$(OLDEST_VENV)/bin/python -m pip install --quiet -r $(OLDEST_VENV)/lowest.txt pytest pytest-xdist
	$(OLDEST_VENV)/bin/python -m pip install --quiet --no-deps -e .
	@touch $@

test-oldest: $(OLDEST_VENV)/.installed data-link
	@$(OLDEST_VENV)/bin/python -c 'import sys, torch, torchvision, numpy; print("oldest:", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__)'
	MBE_TEST_ZOO=families $(OLDEST_VENV)/bin/python -m pytest $(PYTEST_JOBS) tests -q -p no:cacheprovider

$(COLAB_VENV)/.installed: Makefile
	@test -n "$(COLAB_PYTHON)" || { echo "test-colab needs Python 3.13 (Colab's), on PATH or from pyenv"; exit 1; }
	rm -rf $(COLAB_VENV)
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet $(COLAB_STACK)
	@touch $@

test-colab: install $(COLAB_VENV)/.installed
	MBE_COLAB_PYTHON=$(abspath $(COLAB_VENV))/bin/python $(BIN)/python -m pytest tests/test_colab.py -q -p no:cacheprovider -rs

# After a version bump or a change of repository URL: every lesson's badge and install block.
sync-lessons:
	$(PYTHON) tools/sync_lessons.py

# The student version: every lesson without its solutions and self-check bodies, in _build/student.
student:
	$(PYTHON) tools/student.py --out _build/student

# After `make book`: the lessons' run times from its execution table, into lessons/results/lesson_times.json
# (the instructors' page reads them; commit the file).
study-times:
	$(BIN)/python tools/study_time.py collect

clean:
	rm -rf _build
