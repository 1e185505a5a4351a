"""Recorded videos uploaded for a camera: probed, stored, replayed through the pipeline.

The ReID API stores an upload's file under ``<data dir>/uploads/`` (after
``ffprobe`` said it is a video) and records it in Redis; the runner
(``crosscam run --runtime-cameras``, :mod:`crosscam.cameras`) starts one
``crosscam ingest --source <file> --start-time-ns <start>`` per queued upload,
as that camera, and marks it done when the file has been read. Progress comes
from the camera's ingest status (frames read from the file / frames in it).

Keys (see :mod:`schemas.keys`): ``crosscam:uploads`` — hash: upload id → JSON
:class:`Upload`. Each new upload or state change bumps the camera registry's
version, which is what the runner follows.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import redis

from schemas.keys import CAMERA_META_KEY, UPLOADS_KEY, camera_status_key

PROBE_TIMEOUT_S = 30.0
VIDEO_SUFFIXES = {"avi": ".avi", "mp4": ".mp4", "mov": ".mov", "matroska": ".mkv", "webm": ".webm"}


class NotAVideo(ValueError):
    """ffprobe found no video stream (or could not read the file)."""


@dataclass(frozen=True)
class Probe:
    """What ffprobe says about a video file."""

    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    suffix: str
    codec: str = ""
    profile: str = ""
    b_frames: int = 1
    """``has_b_frames`` of the video stream (0: pictures come in display order; unknown
    counts as 1)."""


def probe_video(path: str, ffprobe: str = "ffprobe") -> Probe:
    """Probe a file with ffprobe (by its content, never its name); NotAVideo when it is none."""
    try:
        out = subprocess.run(
            [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
            capture_output=True, timeout=PROBE_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise NotAVideo("probing the file took too long") from None
    try:
        doc = json.loads(out.stdout or b"{}")
    except json.JSONDecodeError:
        raise NotAVideo("ffprobe could not read the file") from None
    videos = [s for s in doc.get("streams", []) if s.get("codec_type") == "video"]
    fmt = doc.get("format", {})
    if out.returncode != 0 or not videos or fmt.get("format_name") in (None, "image2", "png_pipe"):
        raise NotAVideo("not a video file")
    v = videos[0]
    fps = (
        float(Fraction(v.get("avg_frame_rate") or "0/1"))
        if v.get("avg_frame_rate") != "0/0"
        else 0.0
    )
    duration = float(v.get("duration") or fmt.get("duration") or 0.0)
    frames = int(v.get("nb_frames") or 0) or round(duration * fps)
    if frames < 2 or fps <= 0:
        raise NotAVideo("no frames (a still image or an empty video)")
    names = str(fmt.get("format_name", "")).split(",")
    suffix = next((VIDEO_SUFFIXES[n] for n in names if n in VIDEO_SUFFIXES), ".video")
    return Probe(
        frames, fps, duration, int(v.get("width", 0)), int(v.get("height", 0)), suffix,
        codec=str(v.get("codec_name", "")), profile=str(v.get("profile", "")),
        b_frames=int(v.get("has_b_frames", 1) or 0),
    )  # fmt: skip


@dataclass(frozen=True)
class Upload:
    """One uploaded recording and where its replay is."""

    upload_id: str
    camera_id: str
    path: str
    start_ns: int
    frames: int
    fps: float
    duration_s: float
    created_ns: int
    who: str
    state: str = "queued"
    """``queued`` (waiting for the runner), ``replaying``, ``done``."""
    frames_read: int = 0
    frames_published: int = 0
    """Once done: the replay's final counts (the camera's status hash expires)."""

    def public(self, status: dict[str, str] | None = None) -> dict[str, Any]:
        """What the API shows (never the stored path), with progress from the camera's ingest."""
        live = status if self.state == "replaying" else None
        read = int((live or {}).get("frames_captured", 0) or 0) or self.frames_read
        published = int((live or {}).get("frames_published", 0) or 0) or self.frames_published
        return {"upload_id": self.upload_id, "camera_id": self.camera_id, "start_ns": self.start_ns,
                "frames_total": self.frames, "frames_read": min(read, self.frames),
                "frames_published": published,
                "fps": self.fps, "duration_s": self.duration_s, "state": self.state,
                "created_ns": self.created_ns, "who": self.who}  # fmt: skip


class UploadStore:
    """Upload records in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def final_counts(self, camera_id: str) -> dict[str, int]:
        """A finished replay's counts, from its camera's status hash (before it expires)."""
        raw: Any = self.client.hgetall(camera_status_key(camera_id))
        st = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        return {"frames_read": int(st.get("frames_captured", 0) or 0),
                "frames_published": int(st.get("frames_published", 0) or 0)}  # fmt: skip

    def get(self, upload_id: str) -> Upload | None:
        raw: Any = self.client.hget(UPLOADS_KEY, upload_id)
        return None if raw is None else Upload(**json.loads(raw))

    def add(self, upload: Upload) -> None:
        """Record a new upload and tell the runner (registry version bump)."""
        self.client.hset(UPLOADS_KEY, upload.upload_id, json.dumps(asdict(upload)))
        self.client.hincrby(CAMERA_META_KEY, "version", 1)

    def all(self) -> list[Upload]:
        """Every upload, newest first."""
        raw: Any = self.client.hgetall(UPLOADS_KEY)
        ups = [Upload(**json.loads(v)) for v in raw.values()]
        return sorted(ups, key=lambda u: -u.created_ns)

    def set_state(self, upload_id: str, state: str, **counts: int) -> None:
        """Move an upload on (``replaying``, ``done`` with its final ``frames_read`` and
        ``frames_published``)."""
        raw: Any = self.client.hget(UPLOADS_KEY, upload_id)
        if raw is None:
            return
        doc = {**json.loads(raw), "state": state, **counts}
        self.client.hset(UPLOADS_KEY, upload_id, json.dumps(doc))
