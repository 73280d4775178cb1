"""Benchmark harness for ferricorn (see bench/README.md); the apps import as bench.apps.X."""
