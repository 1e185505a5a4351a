"""Forwarding ``/api/*`` and ``/thumbnails/*`` to the ReID service's HTTP API (one origin).

The caller's bearer token goes along (the ReID API checks the role and
audits); the gallery adds ``X-Forwarded-For`` so the audit trail says where
the request came from. Failures never escape as exceptions: an unreachable or
slow ReID API becomes a 502/504 JSON answer ``{"error": ...}`` that the page
shows, without the API's internal address (that goes to the log, redacted).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("accept", "authorization", "content-type")
"""Request headers passed on to the ReID API (no cookies)."""
RETURNED_HEADERS = ("content-type", "cache-control", "allow", "www-authenticate")
"""Answer headers handed back (the gallery sets its own security headers)."""

HTTP_BAD_GATEWAY = 502
HTTP_GATEWAY_TIMEOUT = 504


@dataclass
class Answer:
    """An HTTP answer to hand back to the browser."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class ReidApiProxy:
    """Forwards requests to ``base_url`` (``http://host:port[/prefix]``).

    Args:
        base_url: the ReID API's base URL.
        timeout_s: connect and read timeout of one request.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("ReID API URL must be http(s)://host[:port]")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout_s, follow_redirects=False
            )
        return self._client

    async def forward(
        self,
        method: str,
        path_and_query: str,
        headers: dict[str, str],
        body: bytes | AsyncIterator[bytes] | None,
        client: str,
    ) -> Answer:
        """Send one request upstream; the answer, or a JSON error saying why there is none."""
        send = {k: v for k, v in headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
        send["X-Forwarded-For"] = client
        try:
            resp = await self._http().request(method, path_and_query, headers=send, content=body)
        except httpx.TimeoutException:
            log.warning("reid_api_timeout", extra={"url": self.base_url, "path": path_and_query})
            return error_answer(
                HTTP_GATEWAY_TIMEOUT, f"the ReID API did not answer within {self.timeout_s:g} s"
            )
        except httpx.HTTPError as exc:
            log.warning("reid_api_unreachable", extra={"url": self.base_url, "error": repr(exc)})
            return error_answer(HTTP_BAD_GATEWAY, "the ReID API is unreachable")
        out = [(k, v) for k, v in resp.headers.items() if k.lower() in RETURNED_HEADERS]
        return Answer(resp.status_code, resp.content, out)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def error_answer(status: int, message: str) -> Answer:
    """A JSON error the page can show: ``{"error": message}``."""
    import json

    body = json.dumps({"error": message}).encode()
    return Answer(status, body, [("Content-Type", "application/json")])
