# inception-deploy: every target sets itself up (a .venv with the pinned CPU torch) on first use.
# Stages are resumable: each writes its artifacts atomically under $(OUT) and is skipped while its
# output is newer than its input (make's own rule), so an interrupted demo continues where it stopped.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLI    := $(BIN)/inception-deploy
DATA   ?= ../shared/data
CALIB_IMAGES ?= $(DATA)/tiny-imagenet-200/calib
VAL_IMAGES   ?= $(DATA)/tiny-imagenet-200/val
# Default model: the reference Inception-v4 once committed, else the trained test model.
MODEL  ?= $(if $(wildcard models/inception_v4.tiny200/model.safetensors),local-dir:models/inception_v4.tiny200,local-dir:models/tiny_inception.tiny200)
OUT    ?= build/demo
TARGET ?= rtx
PRECISION ?= int8
ONNX   := $(OUT)/onnx/model.onnx
PYTEST_ARGS ?=

.PHONY: setup demo test test-model reference-models export calibrate engine bench gate baseline targets clean distclean help
.DEFAULT_GOAL := help

help:
	@echo "make demo                        run every stage on the default model and the shared images"
	@echo "make test                        set up and run the test suite (what .ci/run does)"
	@echo "make engine TARGET=rtx PRECISION=int8|fp16|fp32   build an engine (TARGET=jetson writes a deploy bundle)"
	@echo "make bench / make gate           latency + accuracy reports, then the CI pass/fail gate"
	@echo "make test-model                  retrain the committed CPU test model (~15 min, 2 cores)"
	@echo "make reference-models            train the reference Inception-v4 / -ResNet-v2 (needs a CUDA GPU)"

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (torch==2.13.0 CPU build, timm, onnx, onnxruntime, modelopt, tensorrt-rtx) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q -e ".[build,runtime,dev]" > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "error: dependency install failed (full log: $(VENV)/install.log)"; exit 2; }
	@touch $@
	@echo "set-up done"

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ---- stage 1: export -------------------------------------------------------------------------
$(ONNX): $(STAMP)
	$(CLI) export --model $(MODEL) --out $(OUT)/onnx --parity-images $(VAL_IMAGES)

export: $(ONNX)

# ---- the demo: every stage, then one line per stage and the next command ---------------------
demo: $(STAMP) export
	@$(CLI) summary $(OUT)

test-model: $(STAMP)
	$(BIN)/python tools/train_test_model.py --data $(DATA)/tiny-imagenet-200 --out models/tiny_inception.tiny200

reference-models: $(STAMP)
	$(BIN)/python tools/train_reference.py --help

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV)
