"""Redis key layouts that more than one process shares (a contract, like a topic).

* ``crosscam:camera:<camera_id>`` — a hash with one camera's ingest status,
  written by ingest with a TTL, read by the gallery and the fault checks.
* ``crosscam:frame:<camera_id>:<seq>`` — a claim-checked JPEG, written by
  ingest with a TTL, read by the detector.
* ``crosscam:identity:<global_id>`` and ``crosscam:identity:<global_id>:*`` —
  reserved for any data kept about one identity, so that erasing the identity
  (``crosscam erase``) finds and deletes every such key.
* ``crosscam:erased:tracklets`` — a sorted set of the tracklet ids of erased
  identities (score: when the entry may be dropped, Unix seconds), written by
  erasure, read by the ReID stage so a replay of the tracklets topic cannot
  bring an erased identity back. Tracklet ids carry no personal data.
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


def identity_key(global_id: str) -> str:
    """Redis key (and prefix, with ``:``) of data kept about one identity."""
    return IDENTITY_KEY.format(global_id=global_id)
