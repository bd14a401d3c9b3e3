# mobileblocks-edu: two commands (see README.md)
#   make book   create .venv if missing, install, build the HTML book into _build/html
#   make test   unit tests + every lesson executed in fast mode (MBE_FAST=1)
SHELL       := /bin/bash
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
SHARED_DATA ?= ../shared/datasets
JB_FLAGS    := --all -W --keep-going
# Idle OpenMP threads sleep instead of spinning: on a small or shared CPU, spinning threads
# slow training several-fold.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: book test book-fast install data-link clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# Offline copy of the datasets: link data -> ../shared/datasets when there is one and no data/ yet.
data-link:
	@if [ -z "$$MBE_DATA" ] && [ ! -e data ] && [ -d "$(SHARED_DATA)" ]; then \
		ln -s "$(SHARED_DATA)" data && echo "linked data -> $(SHARED_DATA)"; fi

# The published book: every notebook executed in normal mode.
book: install data-link
	$(BIN)/jupyter-book build . $(JB_FLAGS)

# The same book with every notebook in fast mode (CI), built into _build/fast.
book-fast: install data-link
	MBE_FAST=1 $(BIN)/jupyter-book build . $(JB_FLAGS) --path-output _build/fast

test: install data-link
	MBE_FAST=1 $(BIN)/python -m pytest --nbmake --nbmake-timeout=300 tests lessons

clean:
	rm -rf _build
