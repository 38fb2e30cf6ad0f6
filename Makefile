# ualm_tk: the product commands and their set-up steps.
#   make recipe   set up, then run the CPU mini recipe end to end (stages that exist)
#   make demo     set up, then run the mini recipe's quick profile (all 8 stages, weak models, under an hour)
#   make test     set up, then run the test suite
SHELL := /bin/bash
VENV := tools/venv
PY := $(VENV)/bin/python
RECIPE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: all install install-python install-system recipe demo test clean-venv

all: install

install: install-system install-python

install-system:
	tools/install_system.sh

install-python:
	tools/install_python.sh

recipe: install
	cd egs2/mini_ualm/ualm1 && ./run.sh $(RECIPE_ARGS)

demo: install
	cd egs2/mini_ualm/ualm1 && ./run_quick.sh $(RECIPE_ARGS)

test: install
	$(PY) -m pytest test $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
