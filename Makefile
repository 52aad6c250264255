SHELL := /bin/bash

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SETUP_STAMP := $(VENV)/.setup-stamp
DEMO_CONFIG := examples/example_demo.yaml
DEMO_OUTPUT := output/user/demo

.PHONY: setup lint format test llmstudio stop-llmstudio demo shell bench browser docker-build docker-test

# Re-installs only when a requirements file is newer than the stamp.
setup: $(SETUP_STAMP)
	$(BIN)/python scripts/prepare_default_backbone.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes first on its own so that the rest resolves against the build already installed.
# deepspeed is a source package: DS_BUILD_OPS=0 builds none of its CUDA/C++ ops at install time
# (they compile on first use, and only the ones a run needs).
$(SETUP_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/pip install -r requirements.txt -r requirements-dev.txt
	touch $@

# mypy reads its settings (files = llm_studio/) from pyproject.toml.
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint .github/workflows/*.yml

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Browser tests drive Debian's chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

test: setup browser
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q

# The GUI at http://localhost:10101 (host guard + waved + the app, all ended by make stop-llmstudio).
llmstudio: setup
	$(BIN)/python -m llm_studio.ui.launch start

stop-llmstudio:
	$(BIN)/python -m llm_studio.ui.launch stop

# The command-line demo: fine-tune the default backbone on the demo data, then chat with it.
demo: setup
	$(BIN)/python train.py -Y $(DEMO_CONFIG)
	@echo
	@echo "Chat with the demo model:"
	@echo "  $(BIN)/python prompt.py -e $(DEMO_OUTPUT)"

shell:
	@echo "Activate the environment with:"
	@echo "  . $(BIN)/activate"

# Benchmarks print a ratio against a baseline run in the same process; they assert nothing.
bench: setup
	$(BIN)/python bench/bench_padding.py
	$(BIN)/python bench/bench_experiment_list.py
	$(BIN)/python bench/bench_chat_first_words.py
	$(BIN)/python bench/bench_sessions.py
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_hf_trainer.py --repeats 3
	$(BIN)/python bench/bench_hf_trainer.py --model smollm2 --rows 200 --repeats 3

# The Docker image, as the README's Docker section builds it. BASE_IMAGE=<image> builds on another
# base (the Dockerfile's default is a public Debian image with Python 3.11).
IMAGE ?= h2o-llmstudio
docker-build:
	docker build -t $(IMAGE) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .

# Builds the image on this machine (from nothing: installs docker.io, starts dockerd, makes a
# Debian base image) and checks the guide's `docker run` in chromium; stops what it started.
docker-test: setup browser
	docker/docker-test.sh
