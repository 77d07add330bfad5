# The two commands in README.md are `make run` and `make test`; everything they need is set up on the way,
# and every step is skipped when it is already done, so second runs are fast.

SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/switchboard
# System packages: cmake builds whisper.cpp (whisper-rs-sys), libclang-dev is for bindgen, espeak-ng
# and flite synthesize the speech the tests transcribe, sox converts audio, python3-pip fetches model packages;
# postgresql is the second database the call log is tested on, chromium + chromium-driver drive the web page
# test, python3-venv holds schemathesis (the API fuzzer).
APT_PACKAGES := cmake libclang-dev espeak-ng libespeak-ng-dev flite sox python3-pip python3-venv postgresql \
	chromium chromium-driver
# schemathesis checks the API against its OpenAPI description; pinned so CI runs the same checks.
SCHEMATHESIS := .venv/schemathesis/bin/st
SCHEMATHESIS_VERSION := 4.32.5
# Models (names from models/manifest.toml): the demo call needs the default speech-to-text and language
# models; the language model tests check the tokenizer and the model code on both architectures, llama
# (SmolLM2) and qwen2.
RUN_MODELS := whisper-tiny.en smollm2-135m
MODELS := whisper-tiny.en smollm2-135m qwen2.5-0.5b
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: run test setup build models lint fmt clean-models tools

## Command 1: set up, then place a simulated call from the bundled caller recording through the real
## server (started in-process with the inbound support flow), and print the conversation and latencies.
run: setup build
	$(BIN) models fetch $(RUN_MODELS)
	$(BIN) call --audio samples/caller-hours.wav --record data/demo-call.wav
	$(BIN) calls list --limit 5

## Command 2: set up, then check formatting and lints and run the whole test suite (the call log's tests
## run on SQLite and on a PostgreSQL server started on loopback by scripts/test-postgres.sh).
test: setup build models tools lint
	SWITCHBOARD_TEST_POSTGRES_URL="$$(scripts/test-postgres.sh)" \
	  $(CARGO) test --release --locked --workspace -- --test-threads=1

setup:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)"; exit 1; }

build:
	$(CARGO) build --release --locked --workspace --bins

tools: $(SCHEMATHESIS)

$(SCHEMATHESIS):
	python3 -m venv .venv/schemathesis
	.venv/schemathesis/bin/pip install -q "schemathesis==$(SCHEMATHESIS_VERSION)"

models: build
	$(BIN) models fetch $(MODELS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
