"""Shared pytest setup: the real local stack fixtures (Kafka, Redis, RTSP), and the slowest
tests' durations printed after every run (as ``--durations=30``), so CI logs keep them."""

import pytest

pytest_plugins = ["tests.stack_fixtures"]

DURATIONS_SHOWN = 30
"""How many of the slowest setups, calls and teardowns the summary lists (``--durations``
on the command line wins)."""


def pytest_configure(config: pytest.Config) -> None:
    if config.option.durations is None:
        config.option.durations = DURATIONS_SHOWN
