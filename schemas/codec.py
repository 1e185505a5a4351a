"""The one codec: msgpack for internal topics, JSON for the public match topic.

``encode(msg)`` picks the wire format from the message type; ``decode(cls,
data)`` validates types and the schema version and raises :class:`DecodeError`
(with a reason fit for the dead-letter topic) on anything else.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

import msgspec

from schemas.messages import SCHEMA_VERSION, AuditEvent, Match

T = TypeVar("T", bound=msgspec.Struct)

JSON_TYPES: tuple[type[msgspec.Struct], ...] = (Match, AuditEvent)

_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()


class DecodeError(ValueError):
    """A message that cannot be used: broken bytes, wrong types, or unknown version."""


@cache
def _decoder(cls: type[Any]) -> msgspec.msgpack.Decoder[Any] | msgspec.json.Decoder[Any]:
    if cls in JSON_TYPES:
        return msgspec.json.Decoder(cls)
    return msgspec.msgpack.Decoder(cls)


def encode(msg: msgspec.Struct) -> bytes:
    """Bytes on the wire for ``msg`` (JSON for public types, msgpack otherwise)."""
    if isinstance(msg, JSON_TYPES):
        return _json_encoder.encode(msg)
    return _msgpack_encoder.encode(msg)


def decode(cls: type[T], data: bytes | None) -> T:
    """Decode and validate one message of type ``cls``.

    Raises:
        DecodeError: empty, malformed or mistyped bytes, or a schema version
            other than the one this build understands.
    """
    if not data:
        raise DecodeError(f"empty {cls.__name__} message")
    try:
        msg: T = _decoder(cls).decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"invalid {cls.__name__}: {exc}") from exc
    version = getattr(msg, "v", None)
    if version != SCHEMA_VERSION:
        raise DecodeError(
            f"{cls.__name__} schema version {version} not supported (want {SCHEMA_VERSION})"
        )
    return msg


def json_schema(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a public message type."""
    schema: dict[str, Any] = msgspec.json.schema(cls)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://crosscam.dev/schemas/{cls.__name__.lower()}.v{SCHEMA_VERSION}.json"
    return schema
