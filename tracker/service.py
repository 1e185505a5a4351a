"""``crosscam tracker``: the tracker stage (detections -> tracklets), thin around the core.

One :class:`~tracker.core.CameraTracker` per camera, created on the camera's
first message: restored from Redis when a checkpoint exists (same ids, and
frames it has already applied are skipped), else fresh; while Redis is
unreachable the frame is retried, never opened on a fresh tracker. Finished
tracklets go to the tracklets topic keyed by camera id. Frames are applied one
by one, so a frame that fails never loses the tracklets of those before it.

State checkpoints (:mod:`tracker.state_store`):

* ``on_revoke`` — after the in-flight batch is produced and committed — saves
  every camera of the revoked partitions, so the replica that gets them
  continues exactly there;
* ``after_commit`` saves cameras whose last save is older than
  ``checkpoint_interval_s`` — never ahead of produced output; after a crash the
  new owner restores it and re-reads from the committed offset, and the frames
  between checkpoint and commit are lost to the state only (a short gap);
* ``on_assign`` drops cameras of partitions no longer owned.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import numpy as np
import redis

from schemas.messages import Detections
from schemas.topics import DETECTIONS, TRACKLETS
from service.cli import add_stage_arguments, load_stage_settings, serve_stage
from service.delivery import apply_each, is_transient
from service.kafka import Output, Record, dead_letter
from service.metrics import camera_label, start_metrics_server
from tracker import metrics as m
from tracker import state
from tracker.core import CameraTracker, TrackerParams
from tracker.settings import TrackerSettingsRoot
from tracker.state_store import RedisStateStore

log = logging.getLogger(__name__)


MAX_BOXES_PER_FRAME = 1024
"""More boxes than this in one frame is not a camera's view of people: refused (dead letter)
before the tracker's cost, quadratic in boxes, is paid."""

MAX_EMBEDDING_DIM = 4096
"""Widest appearance vector accepted from the bus."""


def check_detections(msg: Detections) -> str | None:
    """Why ``msg``'s arrays cannot be used (sizes, caps, NaN/inf), or None when they can."""
    if msg.eos:
        return None
    n, rem = divmod(len(msg.scores), 4)
    if rem:
        return f"scores: {len(msg.scores)} bytes is not a whole number of float32"
    if n > MAX_BOXES_PER_FRAME:
        return f"{n} boxes in one frame (cap {MAX_BOXES_PER_FRAME})"
    if not 0 <= msg.embedding_dim <= MAX_EMBEDDING_DIM:
        return f"embedding_dim {msg.embedding_dim} outside 0..{MAX_EMBEDDING_DIM}"
    if len(msg.boxes_xyxy) != 16 * n:
        return f"boxes_xyxy: {len(msg.boxes_xyxy)} bytes for {n} scores"
    if msg.embedding_dim and len(msg.embeddings) != 4 * n * msg.embedding_dim:
        return f"embeddings: {len(msg.embeddings)} bytes for {n}x{msg.embedding_dim}"
    if msg.sharpness and len(msg.sharpness) != 4 * n:
        return f"sharpness: {len(msg.sharpness)} bytes for {n} scores"
    for name in ("boxes_xyxy", "scores", "embeddings", "sharpness"):
        values = np.frombuffer(getattr(msg, name), "<f4")
        if not np.isfinite(values).all():
            return f"{name}: not finite (NaN or inf)"
    return None


class TrackerStage:
    """The :class:`service.kafka.Stage` of the tracker.

    Args:
        params: the core's parameters, for every camera.
        store: where camera states are saved (None: no checkpoints).
        checkpoint_interval_s: least time between two periodic saves of a camera.
        clock: monotonic seconds, for the checkpoint interval only (tests pin it).
    """

    name = "tracker"
    input = DETECTIONS

    def __init__(
        self,
        params: TrackerParams,
        store: RedisStateStore | None,
        checkpoint_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.store = store
        self.checkpoint_interval_s = checkpoint_interval_s
        self.clock = clock
        self.trackers: dict[str, CameraTracker] = {}
        self.partition_of: dict[str, int] = {}
        self.saved_at: dict[str, float] = {}
        self.dirty: set[str] = set()

    # ------------------------------------------------------------ messages

    def handle(self, records: list[Record]) -> list[Output]:
        """Apply the frames one by one; a failure keeps the outputs of those before it.

        The finished tracklets of every frame applied before a failing one are
        handed back (:class:`service.delivery.PartialBatch`): run again, those
        frames would be skipped as replays and their tracklets lost.
        """
        return apply_each(records, self._handle_one)

    def _handle_one(self, rec: Record) -> list[Output]:
        msg: Detections = rec.message
        problem = check_detections(msg)
        if problem is not None:
            return [dead_letter(self.name, rec, problem)]
        cam = msg.camera_id
        tracker = self._tracker(cam, rec.partition)
        t0 = time.perf_counter()
        res = tracker.step_detections(msg)
        m.UPDATE_SECONDS.labels(camera_label(cam)).observe(time.perf_counter() - t0)
        if res.duplicate:
            m.DUPLICATE_FRAMES.labels(camera_label(cam)).inc()
            return []
        self.dirty.add(cam)
        outputs = [Output.of(TRACKLETS, cam, tl) for tl in res.finished]
        for tl in res.finished:
            m.TRACKLETS_EMITTED.labels(camera_label(cam), tl.end_reason).inc()
        for reason, count in res.dropped.items():
            m.TRACKLETS_DROPPED.labels(camera_label(cam), reason).inc(count)
        m.ACTIVE_TRACKS.labels(camera_label(cam)).set(len(tracker.tracks))
        return outputs

    def _tracker(self, camera_id: str, partition: int) -> CameraTracker:
        """The camera's tracker: in memory, else restored from the store, else new."""
        self.partition_of[camera_id] = partition
        tracker = self.trackers.get(camera_id)
        if tracker is not None:
            return tracker
        outcome = "new"
        if self.store is not None:
            try:
                data = self.store.load(camera_id)
                if data is not None:
                    tracker = state.loads(data, self.params)
                    outcome = "restored"
            except (redis.RedisError, state.StateError) as exc:
                if is_transient(exc):
                    # Redis unreachable: a fresh tracker would restart the camera's
                    # track ids; the loop retries this frame until Redis is back.
                    raise
                outcome = "failed"
                m.CHECKPOINT_ERRORS.labels(camera_label(camera_id), "load").inc()
                log.warning(
                    "tracker_state_restore_failed", extra={"camera": camera_id, "error": repr(exc)}
                )
        if tracker is None:
            tracker = CameraTracker(camera_id, self.params)
        m.RESTORES.labels(camera_label(camera_id), outcome).inc()
        log.info(
            "camera_tracker_opened",
            extra={
                "camera": camera_id,
                "partition": partition,
                "outcome": outcome,
                "tracks": len(tracker.tracks),
                "next_id": tracker.ids.next_id,
            },
        )
        self.trackers[camera_id] = tracker
        self.saved_at[camera_id] = self.clock()
        return tracker

    # ---------------------------------------------------------- checkpoints

    def checkpoint(self, camera_id: str) -> int:
        """Save one camera's state now; returns its size in bytes (0 when not saved)."""
        tracker = self.trackers.get(camera_id)
        if tracker is None or self.store is None:
            return 0
        t0 = time.perf_counter()
        data = state.dumps(tracker)
        try:
            self.store.save(camera_id, data)
        except redis.RedisError as exc:
            m.CHECKPOINT_ERRORS.labels(camera_label(camera_id), "save").inc()
            log.warning(
                "tracker_state_save_failed", extra={"camera": camera_id, "error": repr(exc)}
            )
            return 0
        m.CHECKPOINT_SECONDS.labels(camera_label(camera_id)).observe(time.perf_counter() - t0)
        m.CHECKPOINT_BYTES.labels(camera_label(camera_id)).set(len(data))
        self.saved_at[camera_id] = self.clock()
        self.dirty.discard(camera_id)
        return len(data)

    def _cameras_of(self, partitions: list[int]) -> list[str]:
        owned = set(partitions)
        return sorted(c for c, p in self.partition_of.items() if p in owned and c in self.trackers)

    def after_commit(self, partitions: list[int]) -> None:
        now = self.clock()
        for cam in self._cameras_of(partitions):
            if (
                cam in self.dirty
                and now - self.saved_at.get(cam, 0.0) >= self.checkpoint_interval_s
            ):
                self.checkpoint(cam)

    def on_revoke(self, partitions: list[int]) -> None:
        cams = self._cameras_of(partitions)
        for cam in cams:
            self.checkpoint(cam)
        if cams:
            log.info(
                "tracker_states_saved_on_revoke", extra={"partitions": partitions, "cameras": cams}
            )

    def on_assign(self, partitions: list[int]) -> None:
        owned = set(partitions)
        for cam in [c for c, p in self.partition_of.items() if p not in owned]:
            self.trackers.pop(cam, None)
            self.partition_of.pop(cam, None)
            self.saved_at.pop(cam, None)
            self.dirty.discard(cam)
            m.ACTIVE_TRACKS.labels(camera_label(cam)).set(0)


def configure(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(
        parser,
        "crosscam-tracker",
        "kafka, redis, metrics, tracker",
        "redis:// URL of the state store (overrides the config)",
    )


def main(args: argparse.Namespace) -> int:
    settings = load_stage_settings(TrackerSettingsRoot, args)
    if settings is None:
        return 2
    cfg = settings.tracker
    store = RedisStateStore.from_url(settings.redis.url, cfg.state_key_prefix, cfg.state_ttl_s)
    stage = TrackerStage(cfg.params(), store, cfg.checkpoint_interval_s)
    start_metrics_server(settings.metrics, name="tracker")

    try:
        serve_stage(stage, settings.kafka, args.group_id)
    finally:
        store.close()
    return 0
