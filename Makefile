# One entry point for people and CI. Everything installs into .venv; nothing global but wrk
# (for `make bench`) and nginx (for the tests, `make test-deps`), from Debian's packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed

.PHONY: run test test-rust test-python test-deps lint typecheck build clean bench conformance fuzz wheel valgrind soak

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $(STAMP)

# Builds the Rust extension in release mode and installs the package (editable) into .venv.
build: $(STAMP)
	$(VENV)/bin/maturin develop --release -q

# The abi3 manylinux wheel (CPython 3.10 and later) and the sdist, into $(DIST). Built like
# `make build` (release, same features), so after it cargo has nothing left to compile.
DIST ?= dist
MATURIN ?= $(VENV)/bin/maturin
wheel:
	$(MATURIN) build --release -q -o $(DIST)
	$(MATURIN) sdist -o $(DIST)

run: build
	$(VENV)/bin/ferricorn examples.hello:app --host 127.0.0.1 --port 8000

test: test-rust test-python

test-rust:
	cargo test --release --quiet

# System packages the Python tests need besides .venv: nginx (Debian's package) for
# tests/python/test_nginx.py. Installs it only when missing (which needs root).
test-deps:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
		|| (apt-get update -qq && apt-get install -y -qq nginx)

test-python: build test-deps
	$(PY) -m pytest -q -p no:cacheprovider tests/python
	$(PY) -m pytest -q -p no:cacheprovider tests/bench

# The property-based fuzz tests of the parsers we own (framing checks, proxy headers), far
# longer than `make test` runs them and with a fresh seed each time; a failure prints the
# seed that replays it (FERRICORN_FUZZ_SEED=<seed>). FUZZ_ITERATIONS sets the length.
# Then the end-to-end property tests of the ASGI message checks and the TLS/HTTP/2 glue
# (hypothesis), with FUZZ_EXAMPLES examples each and a fresh seed.
FUZZ_ITERATIONS ?= 2000000
FUZZ_EXAMPLES ?= 3000
fuzz: build
	FERRICORN_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) FERRICORN_FUZZ_SEED=clock \
		cargo test --release --quiet fuzz_ -- --nocapture
	FERRICORN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FERRICORN_FUZZ_SEED=clock \
		$(PY) -m pytest -q -p no:cacheprovider tests/python/test_fuzz_asgi_messages.py \
		tests/python/test_fuzz_tls_h2.py -k "not test_bug_"

# The soak: 1,000,000 mixed requests (hello, echo, streams, SSE, WebSocket sessions, clients
# that leave mid-body and mid-stream) on --workers 2, sampling RSS and open fds of every
# process each second; fails on growth over 5% after the warm-up, a request neither answered
# nor cut by its own client, a task or descriptor left behind. Figures in bench/out/soak.json.
# SOAK_ARGS adds options, e.g. SOAK_ARGS="--requests 50000" or "--mix ws=1" (one kind alone).
SOAK_ARGS ?=
soak: build
	$(PY) tests/soak/soak.py --json bench/out/soak.json $(SOAK_ARGS)

# The Rust tests under valgrind memcheck (bench/RESULTS.md, "Valgrind", has the last run):
# any invalid read, write or use of uninitialised memory fails it; leaks are reported.
valgrind:
	cargo test --release --no-run
	for t in $$(cargo test --release --no-run --message-format=json 2>/dev/null \
			| $(PYTHON) -c 'import json,sys; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("profile",{}).get("test") and m.get("executable")]'); do \
		FERRICORN_FUZZ_ITERATIONS=200 valgrind --tool=memcheck --error-exitcode=99 \
			--leak-check=full --errors-for-leak-kinds=none $$t --test-threads=1 || exit 1; \
	done

# The Autobahn TestSuite WebSocket cases (1.* to 13.*), report in docs/autobahn/. `make test`
# runs them too (tests/python/test_autobahn.py), into a temporary folder.
conformance: build
	$(PY) tests/conformance/autobahn.py --out docs/autobahn

lint: build
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench examples
	$(MAKE) typecheck

# The public API's types: a sample of its use must pass `mypy --strict`, a sample of misuse
# must fail with exactly its three errors, and the extension's stub must match the module.
typecheck: build
	MYPYPATH=python $(VENV)/bin/mypy --strict --follow-imports=silent tests/typing/public_api.py
	@MYPYPATH=python $(VENV)/bin/mypy --follow-imports=silent tests/typing/wrong_api.py \
		| grep -q "Found 3 errors" \
		|| { echo "tests/typing/wrong_api.py: expected exactly 3 type errors"; exit 1; }
	MYPYPATH=python $(PY) -m mypy.stubtest ferricorn._ferricorn \
		--allowlist tests/typing/stubtest-allowlist.txt

clean:
	rm -rf $(VENV) target

-include bench/bench.mk
