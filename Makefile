# One entry point for people and CI. Everything installs into .venv; nothing global but wrk
# (for `make bench`, from Debian's packages).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed

.PHONY: run test test-rust test-python lint build clean bench conformance

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $(STAMP)

# Builds the Rust extension in release mode and installs the package (editable) into .venv.
build: $(STAMP)
	$(VENV)/bin/maturin develop --release -q

run: build
	$(VENV)/bin/ferricorn examples.hello:app --host 127.0.0.1 --port 8000

test: test-rust test-python

test-rust:
	cargo test --release --quiet

test-python: build
	$(PY) -m pytest -q -p no:cacheprovider tests/python

# The Autobahn TestSuite WebSocket cases (1.* to 13.*), report in docs/autobahn/. `make test`
# runs them too (tests/python/test_autobahn.py), into a temporary folder.
conformance: build
	$(PY) tests/conformance/autobahn.py --out docs/autobahn

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench examples

clean:
	rm -rf $(VENV) target

-include bench/bench.mk
