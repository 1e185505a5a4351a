"""Versioned message types of every topic (v1).

Conventions (STYLE.md): units and box formats are in the names
(``ts_capture_ns``, ``boxes_xyxy``); times are integer nanoseconds since the
Unix epoch taken from the camera's capture clock, so every stage downstream
works from message time, never from its own clock. Arrays travel as raw
little-endian bytes (float32 unless stated) with their shape given by sibling
fields; the ``*_array()`` helpers turn them back into numpy views without a copy.

Every message carries ``v``, its schema version; a decoder that meets a version
it does not know rejects the message (it goes to the dead-letter topic).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import numpy as np

SCHEMA_VERSION = 1

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""What a camera id may be: 1-64 of letters, digits, ``_ . -``, starting with a letter or
digit (so never empty, ``.`` or ``..``). Ids name Redis keys, thumbnail folders, metric
labels and HTML; checked wherever they enter (cameras file, every message, the web)."""

CameraId = Annotated[str, msgspec.Meta(pattern=CAMERA_ID_PATTERN)]
"""A validated camera id (decoding a message with any other id fails: dead letter)."""
OptionalCameraId = Annotated[str, msgspec.Meta(pattern=r"^$|" + CAMERA_ID_PATTERN)]
"""A camera id, or empty where the message may have none (a merge event)."""


def pack_f32(arr: np.ndarray) -> bytes:
    """Raw little-endian float32 bytes of ``arr`` (any shape)."""
    return np.ascontiguousarray(arr, dtype="<f4").tobytes()


def unpack_f32(data: bytes, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_f32`: an ``(N, cols)`` float32 array (read-only view)."""
    arr = np.frombuffer(data, dtype="<f4")
    if cols <= 0:
        return arr.reshape(0, 0) if arr.size == 0 else arr
    if arr.size % cols:
        raise ValueError(f"array of {arr.size} floats does not split into rows of {cols}")
    return arr.reshape(-1, cols)


class Frame(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One analysed camera frame. Topic ``crosscam.frames.v1``, key = camera_id.

    ``seq`` counts the frames this camera *published* (gap-free from 0 per
    ingest session lineage); ``ts_capture_ns`` is when the camera delivered it.
    The image is an inline JPEG (``jpeg``) or, in claim-check mode, a Redis key
    (``jpeg_ref``) holding the JPEG with a TTL. ``eos`` marks the end of a
    finite stream (a replayed file): no image, and the tracker closes every
    track of the camera.

    Optional, -1/0 when unknown (older producers): ``source_index`` is the
    frame's index in its source (a file's decode index; a live camera's frame
    count on its own clock, so a recorded camera is scored frame-exactly);
    ``pts_ns`` the stream's presentation time of the frame (from the stream's
    start); ``ts_arrival_ns`` when ingest received it (``ts_capture_ns`` of a
    live camera comes from the stream's clock, not from this).
    """

    v: int = SCHEMA_VERSION
    camera_id: CameraId
    seq: int
    ts_capture_ns: int
    width: int = 0
    height: int = 0
    jpeg: bytes = b""
    jpeg_ref: str = ""
    eos: bool = False
    source: str = ""
    source_index: int = -1
    pts_ns: int = -1
    ts_arrival_ns: int = 0


class Detections(msgspec.Struct, kw_only=True, omit_defaults=True):
    """People found in one frame. Topic ``crosscam.detections.v1``, key = camera_id.

    Boxes are in the frame message's pixels. For N boxes: ``boxes_xyxy`` is
    N×4 float32, ``scores`` N float32, ``embeddings`` N×``embedding_dim``
    float32 (L2-normalised appearance vectors; empty when no embedder runs),
    ``sharpness`` N float32 (variance of the Laplacian of the crop) and
    ``crops_jpeg`` N small JPEG crops, so the tracker can keep a tracklet's
    best images without the full frame. ``greyscale``: the frame carries no
    colour (an IR or night camera, detected from the pixels);
    ``embeddings_grey`` N×``embedding_dim`` vectors of the crops made grey, on
    a colour frame, so a greyscale camera is compared like with like (empty
    when not computed). ``carried``: N bytes, 1 where the box's vector was
    carried from the box it unambiguously continues in the previous frame
    (appearance on demand) rather than embedded from this crop; empty when
    every vector is fresh. The tracker matches with a carried vector but keeps
    only fresh ones in a track's appearance gallery. ``still``: nothing moved
    since the camera's last analysed frame (motion gating), so the models did
    not run: boxes, scores and vectors repeat that frame's, every vector is
    carried and there are no crop images.
    """

    v: int = SCHEMA_VERSION
    camera_id: CameraId
    seq: int
    ts_capture_ns: int
    width: int
    height: int
    boxes_xyxy: bytes = b""
    scores: bytes = b""
    embeddings: bytes = b""
    embedding_dim: int = 0
    sharpness: bytes = b""
    crops_jpeg: list[bytes] = msgspec.field(default_factory=list)
    eos: bool = False
    ts_detected_ns: int = 0
    embeddings_grey: bytes = b""
    greyscale: bool = False
    carried: bytes = b""
    still: bool = False

    def boxes_array(self) -> np.ndarray:
        """(N, 4) float32 x1, y1, x2, y2."""
        return unpack_f32(self.boxes_xyxy, 4)

    def carried_array(self) -> np.ndarray | None:
        """(N,) bool, True where the vector was carried forward; None when all are fresh
        (or the field does not have one byte per box)."""
        n = len(self.scores) // 4
        if len(self.carried) != n or not n:
            return None
        return np.frombuffer(self.carried, dtype=np.uint8) != 0

    def scores_array(self) -> np.ndarray:
        """(N,) float32."""
        return np.frombuffer(self.scores, dtype="<f4")

    def embeddings_array(self) -> np.ndarray:
        """(N, D) float32; (N, 0) when no embedder ran."""
        n = len(self.scores) // 4
        if not self.embedding_dim:
            return np.zeros((n, 0), dtype=np.float32)
        return unpack_f32(self.embeddings, self.embedding_dim)

    def sharpness_array(self) -> np.ndarray:
        """(N,) float32; zeros when the detector did not measure it."""
        n = len(self.scores) // 4
        if not self.sharpness:
            return np.zeros(n, dtype=np.float32)
        return np.frombuffer(self.sharpness, dtype="<f4")


class Crop(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One of a tracklet's best images, with its appearance vector (and its greyscale one's)."""

    seq: int
    ts_capture_ns: int
    box_xyxy: list[float]
    score: float
    quality: float
    jpeg: bytes = b""
    embedding: bytes = b""
    embedding_grey: bytes = b""


class Tracklet(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A finished single-camera track. Topic ``crosscam.tracklets.v1``, key = camera_id.

    ``tracklet_id`` is deterministic — ``"{camera_id}:{track_id}:{ts_start_ns}"`` —
    so a replayed tracklet overwrites its earlier copy downstream. ``frame_seqs``,
    ``frame_ts_ns`` and ``boxes_xyxy`` (M×4 float32) give the box in every frame
    the person was matched; ``crops`` the K best images and their vectors;
    ``embeddings`` the vectors of every matched frame the tracker kept (bounded,
    M'×``embedding_dim``). ``end_reason`` is ``"lost"`` (not seen for the
    lost-track time) or ``"stream_end"``. ``greyscale``: the camera's frames
    carry no colour (compare it through the crops' ``embedding_grey``).
    """

    v: int = SCHEMA_VERSION
    camera_id: CameraId
    tracklet_id: str
    track_id: int
    ts_start_ns: int
    ts_end_ns: int
    frame_width: int = 0
    frame_height: int = 0
    frame_seqs: list[int] = msgspec.field(default_factory=list)
    frame_ts_ns: list[int] = msgspec.field(default_factory=list)
    boxes_xyxy: bytes = b""
    box_scores: bytes = b""
    crops: list[Crop] = msgspec.field(default_factory=list)
    embeddings: bytes = b""
    embedding_dim: int = 0
    end_reason: Literal["lost", "stream_end"] = "lost"
    greyscale: bool = False

    def boxes_array(self) -> np.ndarray:
        """(M, 4) float32 x1, y1, x2, y2, one row per ``frame_seqs`` entry."""
        return unpack_f32(self.boxes_xyxy, 4)

    def embeddings_array(self) -> np.ndarray:
        """(M', D) float32 kept appearance vectors."""
        if not self.embedding_dim:
            return np.zeros((0, 0), dtype=np.float32)
        return unpack_f32(self.embeddings, self.embedding_dim)


class MatchedTracklet(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A tracklet on another camera that a link joined, and how close it was."""

    tracklet_id: str
    camera_id: CameraId
    ts_start_ns: int
    ts_end_ns: int
    distance: float


class Match(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Public cross-camera event. Topic ``crosscam.matches.v1``, key = global_id, JSON.

    ``kind``:

    * ``new_identity`` — the tracklet matched nobody; ``global_id`` is new.
    * ``link`` — the tracklet joined identity ``global_id``; ``matched`` lists
      the other cameras' tracklets it was found close to, with distances.
    * ``merge`` — evidence showed identities ``merged_ids`` are one person,
      now ``global_id``.
    * ``split`` — a revisited decision took ``tracklet_id`` out of
      ``merged_ids[0]`` into ``global_id``.
    * ``erased`` — identity ``global_id`` was erased (a data subject's request):
      subscribers delete what they hold of it; the id is never used again.

    ``by`` says who decided: ``system`` (the linker) or ``operator`` (a person's
    correction through the API; the linker keeps it from then on).

    ``order_ns`` orders events across the topic's partitions: the key is the
    global id, so a merge and the links it rewrites can sit on different
    partitions and reach a subscriber in either order. It is when the ReID
    stage published the event (wall clock, ns), strictly increasing within one
    ReID process; a subscriber that rebuilds identities applies events by
    ``order_ns`` (0: an older producer, keep the order received).
    """

    v: int = SCHEMA_VERSION
    kind: Literal["new_identity", "link", "merge", "split", "erased"]
    global_id: str
    tracklet_id: str = ""
    camera_id: OptionalCameraId = ""
    ts_start_ns: int = 0
    ts_end_ns: int = 0
    matched: list[MatchedTracklet] = msgspec.field(default_factory=list)
    merged_ids: list[str] = msgspec.field(default_factory=list)
    thumbnail_ref: str = ""
    ts_emitted_ns: int = 0
    by: Literal["system", "operator"] = "system"
    order_ns: int = 0


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A message a stage could not decode or process. Topic ``crosscam.deadletter.v1``.

    Keeps the original bytes, where they came from and why, so nothing is lost
    and an operator can replay it after a fix (``crosscam deadletters replay``).
    ``value_size`` and ``value_sha256`` describe the original bytes; when they
    would not fit the broker's message limit, ``value`` holds only their first
    part and ``truncated`` is true (such a record cannot be replayed).
    ``partition`` = -1 marks an *output* the broker refused (``topic`` is
    where it was going).
    """

    v: int = SCHEMA_VERSION
    stage: str
    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None = None
    value: bytes = b""
    ts_ns: int = 0
    value_size: int = 0
    value_sha256: str = ""
    truncated: bool = False


class AuditEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Who asked what about whom. Topic ``crosscam.audit.v1``, key = who, JSON (for a SIEM).

    One event per identity view, thumbnail fetch, re-identify query, erasure
    and token change: ``who`` (the token's name) with its ``role`` and
    ``token_id`` (public id, never the token), ``action`` (e.g.
    ``reidentify``), the HTTP ``method`` and ``route``, the query
    ``params``, the ``ids`` the answer returned (global or tracklet ids),
    the answer's ``status`` and where the request came from (``client``, and
    ``forwarded_for`` when a proxy such as the gallery named its own client).
    ``audit_id`` is the event's id in the append-only Redis stream (a SIEM can
    drop repeats by it).
    """

    v: int = SCHEMA_VERSION
    ts_ns: int
    who: str
    role: str
    action: str
    method: str = ""
    route: str = ""
    params: dict[str, str] = msgspec.field(default_factory=dict)
    ids: list[str] = msgspec.field(default_factory=list)
    status: int = 0
    client: str = ""
    forwarded_for: str = ""
    token_id: str = ""
    audit_id: str = ""
