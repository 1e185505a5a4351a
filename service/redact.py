"""Secrets out of text bound for logs and answers: URL credentials and secret query values.

``rtsp://admin:hunter2@10.0.0.5/stream?token=abc`` becomes
``rtsp://***@10.0.0.5/stream?token=***``. Applied to every log line (see
:mod:`service.logs`) and to any text from elsewhere that a web answer carries
(an ingest error message, for example).
"""

from __future__ import annotations

import re

SECRET_PARAMS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "access_token",
    "secret",
    "key",
    "api_key",
    "apikey",
    "auth",
    "signature",
    "sig",
    "credential",
    "credentials",
)
"""Query parameter names whose values are secrets (compared case-insensitively)."""

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;](?:" + "|".join(SECRET_PARAMS) + r"))=(?P<value>[^&#\s'\"]*)", re.IGNORECASE
)
_BEARER = re.compile(r"(?P<name>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with URL user:password, secret query values and bearer tokens replaced by ***."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRET.sub(r"\g<name>=***", text)
    return _BEARER.sub(r"\g<name>***", text)
