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

# The recommendation engine in Rust, built offline from Debian's packaged crates; its script
# installs them (as root) and says so, or says why the Python engine alone will be used.
ENGINE_DIR := engines/recommendations-rs
ENGINE := $(ENGINE_DIR)/target/release/archlab-recommendations
ENGINE_SOURCES := $(ENGINE_DIR)/Cargo.toml $(ENGINE_DIR)/Cargo.lock $(ENGINE_DIR)/setup.sh \
	$(wildcard $(ENGINE_DIR)/src/*.rs) .cargo/config.toml

.PHONY: setup test reproduce lab lint format clean wrk

setup: $(STAMP) $(ENGINE) wrk

# wrk, a C load generator, for `archlab bench server` (the HTTP stack's ceiling); Debian's
# package, installed as root, else a line saying how.
APT_WRK := apt-get install -y -q --no-install-recommends wrk >/dev/null
wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { $(APT_WRK) || { apt-get update -q >/dev/null && $(APT_WRK); }; }; } \
		|| echo "wrk: not installed (sudo apt-get install wrk); only archlab bench server needs it"

$(ENGINE): $(ENGINE_SOURCES)
	bash $(ENGINE_DIR)/setup.sh && { [ ! -f $@ ] || touch $@; }

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
	rm -rf .venv build *.egg-info $(ENGINE_DIR)/target
