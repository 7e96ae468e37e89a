# The two commands of the README: `make book` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCHATTACKS := torchattacks==3.5.1
# Tests and the book must not need a GPU; they never download data or weights.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# pip's notes about unreachable extra index folders are dropped; its exit status still counts.
QUIET_PIP := { grep -v "is ignored: it is neither" || true; }
# The book's small trained models are cached here between chapters (never downloaded).
export SANMINI_CACHE := $(CURDIR)/_build/.sanmini-cache
# Numba keeps the compiled "cpu" kernels here (sanmini.ops.numba_cache names a folder in it after the
# operators' sources; without this setting they go to ~/.cache/sanmini/numba).
export NUMBA_CACHE_DIR := $(CURDIR)/_build/.numba-cache

.PHONY: setup test book bench gpu-check colab-cells colab-check live-check lock clean

setup: $(STAMP)

# The pinned stack (requirements.lock: torch/torchvision from the registry, numba, numba-cuda,
# Jupyter Book 1.x, ...) and sanmini itself, editable.
$(STAMP): requirements.lock pyproject.toml package-lock.json Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet --no-deps -e . 2>&1 | $(QUIET_PIP)
# torchattacks, which tests/test_robustness.py checks sanmini.robustness against, pins
# requests 2.25 (a conflict with the lock) but never imports it: installed without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps $(TORCHATTACKS) 2>&1 | $(QUIET_PIP)
	$(BIN)/python -c "import sanmini, torch, torchvision, numba, numba.cuda"
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf _vendor && mkdir -p _vendor/mathjax/output/chtml/fonts _vendor/mathjax/input/tex
	cp node_modules/mathjax/es5/tex-mml-chtml.js _vendor/mathjax/
	cp -r node_modules/mathjax/es5/output/chtml/fonts/woff-v2 _vendor/mathjax/output/chtml/fonts/
	cp -r node_modules/mathjax/es5/input/tex/extensions _vendor/mathjax/input/tex/
	cp -r node_modules/mathjax/es5/ui node_modules/mathjax/es5/a11y _vendor/mathjax/
	touch $@

# Every test, and every chapter of the book run top to bottom by nbval (its asserts are tests), in
# two lines of work that keep both cores busy. The library's tests run from the start (their log,
# printed at the end, in _build/tests.log). Beside them the book is built (log: _build/book.log),
# and then the chapters run under nbval, two at a time, with the models the build trained now in
# the cache, and the browser tests read the site just built (the live widgets in JupyterLab are
# `make live-check`'s). Each process computes on one thread,
# torch's and Numba's: processes that each asked for both cores would spin waiting on each other
# at every parallel loop.
ONE_THREAD := OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
test: setup
	mkdir -p _build
	$(ONE_THREAD) $(BIN)/python -m pytest tests --ignore=tests/test_browser.py --ignore=tests/test_jupyter_live.py \
	  >_build/tests.log 2>&1 & tests=$$!; \
	  status=0; \
	  if $(ONE_THREAD) $(MAKE) --no-print-directory book >_build/book.log 2>&1; then \
	    echo "make book: built _build/html (log: _build/book.log)"; \
	    $(ONE_THREAD) $(BIN)/python -m pytest -n 2 --dist loadscope book tests/test_browser.py \
	      --nbval-lax || status=$$?; \
	  else \
	    tail -n 60 _build/book.log; echo "make book failed: see _build/book.log"; status=1; \
	  fi; \
	  wait $$tests || status=1; \
	  echo "The library's tests (log: _build/tests.log):"; cat _build/tests.log; exit $$status

# Warnings are errors (-W): a broken reference or citation fails the build. The explorers of the
# published page are self-contained HTML; live widgets are left to Jupyter and Colab. Every kernel of
# the build first runs book/_ext/figure_text.py, which records in each figure the size of its
# smallest text (the site keeps it readable on a phone).
book: setup
	SANMINI_STATIC_HTML=1 PYTHONSTARTUP=$(CURDIR)/book/_ext/figure_text.py $(BIN)/jupyter-book build --all -W -n --keep-going .

bench: setup
	$(BIN)/python bench/ops.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/fused_passes.py

# On a machine with a GPU, the whole check in one command (bench/gpu_check.py): the CUDA tests, the
# operator and training-step benchmarks (fused included; their GPU sections of bench/RESULTS.md)
# and a short SAN10 training on synthetic data with AMP, in at most 8 minutes; its own section of
# bench/RESULTS.md records device, driver, versions and date. Without a GPU it says so and fails.
gpu-check: setup
	$(BIN)/python bench/gpu_check.py

# Write the Colab install cell, with the repository URL of _config.yml, into every chapter.
colab-cells: setup
	$(BIN)/python book/_ext/install_cell.py

# The live widgets in a real JupyterLab (tests/test_jupyter_live.py, about a minute): headless
# Chromium runs chapter 2 and a notebook of widgets on a server on 127.0.0.1 and drives them. Not
# part of `make test`: on a machine loaded by the chapters and the library's tests beside it,
# JupyterLab answered late enough to run cells out of order. CI runs it (.github/workflows/tests.yml).
live-check: setup
	$(ONE_THREAD) $(BIN)/python -m pytest tests/test_jupyter_live.py -q -p no:cacheprovider

# The Colab install cell's path (book/_ext/colab_check.py), not part of `make test`: a wheel of the
# working tree, a fresh virtual environment on COLAB_PYTHON, and chapter 2 run by nbclient there, its
# first cell installing the wheel with the newest versions pip finds (torch: a download of several GB).
# CI runs it (.github/workflows/tests.yml).
COLAB_PYTHON ?= $(PYTHON)
colab-check: setup
	$(ONE_THREAD) $(BIN)/python book/_ext/colab_check.py --python $(COLAB_PYTHON)

# Regenerate requirements.lock from the current .venv.
lock:
	{ echo "# Pinned stack for make setup (pip freeze of a working .venv; regenerate with 'make lock')."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v "^sanmini" | grep -v "^torchattacks"; } > requirements.lock

clean:
	rm -rf _build .pytest_cache
