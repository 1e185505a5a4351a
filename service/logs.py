"""Structured logs: one line per event, ``key=value`` pairs after the event name.

log.info("camera_reconnect", extra={"camera": "cam1", "attempt": 3})
-> 2026-11-24T01:02:03.456Z INFO ingest.capture camera_reconnect camera=cam1 attempt=3

Every line passes :func:`service.redact.redact`: URL credentials, secret query
values and bearer tokens never reach a log.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from service.redact import redact

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    """Event name plus every ``extra`` field as ``key=value``; values with spaces are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        """One line: UTC time, level, logger, message, then ``key=value`` extras."""
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{ts}.{int(record.msecs):03d}Z",
            record.levelname,
            record.name,
            record.getMessage(),
        ]
        for key, value in record.__dict__.items():
            if key in _STD or key.startswith("_"):
                continue
            text = str(value)
            parts.append(f"{key}={text!r}" if (" " in text or not text) else f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)  # no log line carries a password, token or secret query value


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once for a process (level from ``CROSSCAM_LOG_LEVEL``)."""
    level = level or os.environ.get("CROSSCAM_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
