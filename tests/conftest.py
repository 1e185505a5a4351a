"""Shared pytest setup: the real local stack fixtures (Kafka, Redis, RTSP)."""

pytest_plugins = ["tests.stack_fixtures"]
