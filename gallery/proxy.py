"""Forwarding ``/api/*`` to the ReID service's HTTP API, so the browser talks to one origin.

Failures never escape as exceptions: an unreachable or slow ReID API becomes
a 502/504 JSON answer ``{"error": ...}`` that the page shows as it is.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
"""Headers that describe one connection, not the resource: never forwarded (RFC 9110 §7.6.1)."""

FORWARDED_REQUEST_HEADERS = ("accept", "content-type", "if-none-match", "if-modified-since")
"""Request headers passed on to the ReID API (no cookies or credentials: it needs none)."""

HTTP_BAD_GATEWAY = 502
HTTP_GATEWAY_TIMEOUT = 504


@dataclass
class Answer:
    """An HTTP answer to hand back to the browser."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def error_answer(status: int, message: str) -> Answer:
    """A JSON error the page can show: ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()
    return Answer(status, body, [("Content-Type", "application/json")])


class ReidApiProxy:
    """Forwards requests to ``base_url`` (``http://host:port[/prefix]``).

    Args:
        base_url: the ReID API's base URL.
        timeout_s: connect and read timeout of one request.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ReID API URL must be http(s)://host[:port]: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s

    def forward(
        self, method: str, path_and_query: str, headers: dict[str, str], body: bytes | None
    ) -> Answer:
        """Send one request upstream; the answer, or a JSON error saying why there is none."""
        conn_cls = (
            http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(self.host, self.port, timeout=self.timeout_s)
        send = {k: v for k, v in headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
        try:
            conn.request(method, self.prefix + path_and_query, body=body, headers=send)
            resp = conn.getresponse()
            data = resp.read()
        except TimeoutError:
            return error_answer(
                HTTP_GATEWAY_TIMEOUT,
                f"the ReID API at {self.base_url} did not answer within {self.timeout_s:g} s",
            )
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
            return error_answer(
                HTTP_BAD_GATEWAY, f"the ReID API at {self.base_url} is unreachable: {reason}"
            )
        finally:
            conn.close()
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        return Answer(resp.status, data, out)
