"""Kafka client security and topic settings from :class:`~service.settings.KafkaSettings`.

Every producer, consumer and admin client of the stages is built with
``**client_kwargs(settings)``, so one ``[kafka]`` section (or the
``CROSSCAM_KAFKA__*`` environment) switches all of them to SASL/SCRAM and TLS.
"""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from schemas.retention import TOPIC_RETENTION_MS
from service.settings import KafkaSettings


def client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured security protocol.

    PLAINTEXT gives ``{}`` (aiokafka's defaults); SASL_* adds the mechanism and
    credentials; SSL and SASL_SSL add a TLS context that verifies the broker
    against ``ssl_cafile`` (or the system CAs) and, with a client certificate,
    authenticates this client too.
    """
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        out["sasl_mechanism"] = settings.sasl_mechanism
        out["sasl_plain_username"] = settings.sasl_username
        out["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    if protocol.endswith("SSL"):
        ctx = create_ssl_context(
            cafile=settings.ssl_cafile,
            certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile,
        )
        ctx.check_hostname = settings.ssl_check_hostname
        out["ssl_context"] = ctx
    return out


def topic_configs(settings: KafkaSettings, topic: str) -> dict[str, str]:
    """Topic-level configs for a topic the stages create: size limit, ISR, retention."""
    out = {
        "max.message.bytes": str(settings.max_message_bytes),
        "min.insync.replicas": str(settings.min_insync_replicas),
    }
    retention = {**TOPIC_RETENTION_MS, **settings.retention_ms}  # crosscam's short defaults
    if topic in retention:
        out["retention.ms"] = str(retention[topic])
    return out
