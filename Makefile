# Transformers from Scratch. The two commands a learner needs:
#   make lab     set up on first use, then open JupyterLab on notebooks/
#   make test    set up on first use, then run the whole test suite
PY      := .venv/bin/python
PORT    ?= 8888
NOTEBOOK_DIR ?= notebooks
JOBS    ?= 2
SUBMISSIONS ?= submissions
OUT     ?= grading-out

.PHONY: lab test setup setup-dev notebooks check-notebooks execute grade bench clean help

help:
	@echo "make lab | test | notebooks | execute | grade SUBMISSIONS=dir [OUT=dir] | bench | clean"

setup:
	@scripts/setup.sh

setup-dev:
	@scripts/setup.sh dev

# Jupyter refuses to start as root unless told --allow-root. Root is what a learner is inside Docker, on a
# cloud VM or in CI, so add it then (and only then: as any other user nothing changes).
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: setup
	$(PY) -m jupyter lab --notebook-dir="$(NOTEBOOK_DIR)" --port=$(PORT) $(AS_ROOT) $(LAB_ARGS)

test: setup-dev
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

notebooks: setup
	$(PY) -m course_lib build

check-notebooks: setup
	$(PY) -m course_lib build --check

# Re-run solutions/ to refresh the outputs that nbval guards, then rebuild notebooks/.
execute: setup
	$(PY) -m course_lib execute $(or $(NB),solutions)
	$(PY) -m course_lib build

grade: setup
	$(PY) -m course_lib grade "$(SUBMISSIONS)" --out "$(OUT)" $(GRADE_ARGS)

bench: setup-dev
	$(PY) bench/attention.py
	$(PY) bench/generation.py
	$(PY) bench/train_char_gpt.py
	$(PY) bench/grading.py

clean:
	rm -rf .venv .pytest_cache $(OUT)
