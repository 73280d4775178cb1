# Benchmark targets for ferricorn; include from the top-level Makefile:
#
#     include bench/bench.mk
#
# `make bench` creates .venv-bench (uvicorn with uvloop and httptools, Granian, Hypercorn, h2,
# gunicorn, FastAPI, matplotlib), installs wrk, h2load (nghttp2-client) and openssl from Debian's
# packages when missing (as root), installs ferricorn from this checkout with `pip install .`
# (a release Rust build), builds the hyper ceiling server and the loadgen load generator (for
# the sse, llm-sse, ws and idle scenarios) and runs bench/run.py, which writes bench/RESULTS.md
# and docs/bench.png.
#
# Variables:
#   BENCH_ARGS    extra arguments for bench/run.py, e.g. BENCH_ARGS="--rounds 5 --pin"
#   BENCH_PYTHON  interpreter that creates the venv (default python3)
#
# Other targets: bench-setup (everything but the run), bench-run (the run only, no rebuild),
# bench-quick (1 round of 3 s, for checking the harness), bench-clean.

BENCH_PYTHON ?= python3
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_ARGS ?=
# h2: the HTTP/2 readiness check of the h2 scenarios (Hypercorn depends on it too).
# gunicorn: the wsgi-* scenarios (gthread worker); 25.1 or later for --no-control-socket.
BENCH_PACKAGES := granian "uvicorn[standard]" hypercorn h2 uvloop httptools "gunicorn>=25.1" \
	fastapi pydantic matplotlib
# Debian's packages for the load generators and the TLS scenarios' certificate, as
# command:package.
BENCH_APT_TOOLS := wrk:wrk h2load:nghttp2-client openssl:openssl

.PHONY: bench bench-setup bench-run bench-quick bench-tools bench-ferricorn bench-hyper \
	bench-loadgen bench-clean

bench: bench-setup
	$(BENCH_PY) bench/run.py $(BENCH_ARGS)

bench-quick: bench-setup
	$(BENCH_PY) bench/run.py --rounds 1 --duration 3 $(BENCH_ARGS)

bench-run:
	$(BENCH_PY) bench/run.py $(BENCH_ARGS)

bench-setup: bench-tools $(BENCH_VENV)/.packages-installed bench-ferricorn bench-hyper \
	bench-loadgen

# wrk, h2load (package nghttp2-client) and openssl come from Debian's packages; installing
# the missing ones needs root.
bench-tools:
	@missing=""; \
	for tool in $(BENCH_APT_TOOLS); do \
		command -v "$${tool%%:*}" >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -eq 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
		else \
			echo "bench: missing:$$missing; as root run: apt-get install -y$$missing" >&2; \
			exit 1; \
		fi; \
	fi

# Reinstalled only when this file changes; delete the stamp to force an upgrade.
$(BENCH_VENV)/.packages-installed: bench/bench.mk
	test -x $(BENCH_PY) || $(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --upgrade pip
	$(BENCH_PY) -m pip install $(BENCH_PACKAGES)
	touch $@

# Always reinstalled: the point is to measure the current source (release build via maturin).
bench-ferricorn: $(BENCH_VENV)/.packages-installed
	$(BENCH_PY) -m pip install --force-reinstall --no-deps .

# After bench-ferricorn, never alongside it: one Rust build at a time on a 2-core machine.
bench-hyper: bench-ferricorn
	cargo build --release --example hyper_hello

# The load generator for the sse, llm-sse, ws and idle scenarios (bench/loadgen.rs); after
# the hyper build, for the same reason.
bench-loadgen: bench-hyper
	cargo build --release --example loadgen

bench-clean:
	rm -rf $(BENCH_VENV) bench/out
