"""Redis key layouts that more than one process shares (a contract, like a topic).

* ``crosscam:camera:<camera_id>`` — a hash with one camera's ingest status,
  written by ingest with a TTL, read by the gallery and the fault checks.
* ``crosscam:frame:<camera_id>:<seq>`` — a claim-checked JPEG, written by
  ingest with a TTL, read by the detector.
* ``crosscam:token:<sha256 of the token>`` — a hash (name, role, token id, times)
  with the token's expiry as its TTL; ``crosscam:tokens`` maps token id -> sha256.
  Written by ``crosscam tokens`` and the web servers' first start, read by both web servers.
* ``crosscam:audit`` — the audit trail: an append-only stream of JSON
  :class:`schemas.messages.AuditEvent` (field ``event``), written by the web
  servers and ``crosscam tokens``; ``crosscam:audit:published`` is the last
  stream id published to ``crosscam.audit.v1``.
* ``crosscam:identity:<global_id>`` and ``crosscam:identity:<global_id>:*`` —
  reserved for any data kept about one identity, so that erasing the identity
  (``crosscam erase``) finds and deletes every such key.
* ``crosscam:erased:tracklets`` — a sorted set of the tracklet ids of erased
  identities (score: when the entry may be dropped, Unix seconds), written by
  erasure, read by the ReID stage so a replay of the tracklets topic cannot
  bring an erased identity back. Tracklet ids carry no personal data.
* ``crosscam:reid:constraints`` — operators' corrections: a list of text records
  ``cannot|must TAB tracklet id TAB tracklet id`` (:mod:`reid.corrections`), appended
  by the ReID API's split/merge, read by every ReID service at start.
* ``crosscam:cameras``, ``crosscam:cameras:links``, ``crosscam:cameras:meta`` — the camera
  registry (:mod:`service.camera_registry`): cameras (with their sources), links, and
  ``version``/``window_s``/``seeded_from``; written by the ReID API's admin routes and
  the runner's seeding, followed by the runner (ingest processes) and the ReID stage.
* ``crosscam:uploads`` — uploaded recordings (:mod:`service.uploads`): upload id → JSON;
  written by the ReID API, replayed (and marked done) by the runner.
* ``crosscam:sitemap`` — the site plan (:mod:`reid.sitemap_api`): ``plan`` and
  ``camera:<id>`` (image/plan point pairs and the fitted homography).
"""

from __future__ import annotations

CAMERA_STATUS_KEY = "crosscam:camera:{camera_id}"
CLAIM_CHECK_KEY = "crosscam:frame:{camera_id}:{seq}"
IDENTITY_KEY = "crosscam:identity:{global_id}"
ERASED_TRACKLETS_KEY = "crosscam:erased:tracklets"


def camera_status_key(camera_id: str) -> str:
    """Redis key of a camera's status hash."""
    return CAMERA_STATUS_KEY.format(camera_id=camera_id)


def claim_check_key(camera_id: str, seq: int) -> str:
    """Redis key of a claim-checked JPEG."""
    return CLAIM_CHECK_KEY.format(camera_id=camera_id, seq=seq)


TOKEN_KEY = "crosscam:token:{digest}"
TOKEN_INDEX_KEY = "crosscam:tokens"
AUDIT_STREAM_KEY = "crosscam:audit"
AUDIT_PUBLISHED_KEY = "crosscam:audit:published"
AUDIT_PUBLISHER_LOCK_KEY = "crosscam:audit:publisher"
CONSTRAINTS_KEY = "crosscam:reid:constraints"
CAMERA_REGISTRY_KEY = "crosscam:cameras"
CAMERA_LINKS_KEY = "crosscam:cameras:links"
CAMERA_META_KEY = "crosscam:cameras:meta"
UPLOADS_KEY = "crosscam:uploads"
SITEMAP_KEY = "crosscam:sitemap"


def token_key(digest: str) -> str:
    """Redis key of a token's hash (by the token's SHA-256 hex digest, never the token)."""
    return TOKEN_KEY.format(digest=digest)


def identity_key(global_id: str) -> str:
    """Redis key (and prefix, with ``:``) of data kept about one identity."""
    return IDENTITY_KEY.format(global_id=global_id)
