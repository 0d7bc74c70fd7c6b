# `make reproduce` and `make test` set everything up, then run.
# With a virtualenv or conda env active they use it; otherwise they create .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)

ifneq ($(or $(VIRTUAL_ENV),$(CONDA_PREFIX)),)
ENV := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))
else
ENV := .venv
endif
BIN := $(ENV)/bin
STAMP := $(ENV)/.archlab-installed

.PHONY: setup test reproduce lab lint format clean

setup: $(STAMP)

$(ENV)/bin/python:
	$(PYTHON) -m venv $(ENV)

$(STAMP): pyproject.toml | $(ENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

reproduce: setup
	$(BIN)/archlab reproduce

# JupyterLab on notebooks/ with the project's environment as its kernel, on loopback; it prints
# the URL (with its token) to open. Root needs --allow-root, a normal user must not pass it.
lab: setup
	$(BIN)/jupyter lab notebooks/ --ip 127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf .venv build *.egg-info
