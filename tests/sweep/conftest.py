"""Fixtures of the benchmark tests (tests/bench_fixtures.py)."""

from tests.bench_fixtures import btiny, fake_server, one_thread, tiny_folder, tiny_items  # noqa: F401
