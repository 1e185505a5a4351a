"""Fault injection and checks for live runs of the whole pipeline (fault tests, bench).

Small blocking helpers meant to run in :attr:`crosscam.demo.LiveRun.during`
(a thread beside the supervisor) or after a run:

* :func:`wait_for` — poll a condition under a deadline (never a bare sleep);
* :func:`camera_status`, :func:`frames_published` — ingest's status hashes;
* :func:`checkpoint_written` — a tracker checkpoint key for a camera;
* :func:`poison` — garbage bytes and a wrong-version message onto a topic;
* :func:`kill_for_good` — SIGKILL a supervised child without a restart, so
  its consumer group must hand its partitions to the other replicas;
* :func:`log_events` — the structured events of a child's log;
* :func:`stored_tracklet_ids` — what the ReID store holds, after the run;
* :func:`free_port_range` — consecutive free ports for a run's metrics;
* :class:`Topics`, :func:`check_accounting`, :func:`check_detections_tracked`,
  :func:`check_tracklets_and_identities` — what a run left on the topics, and the
  no-loss checks every live test makes (they raise :class:`LossError`, so they hold
  under ``python -O`` too); :func:`merged_link_precision` — the precision a linker
  merging everyone would score on a run, for judging a precision floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaProducer

from common.boxes import box_iou
from crosscam.supervisor import Supervisor
from evaluation import live_scoring as pipeline
from schemas.codec import DecodeError, decode, encode
from schemas.keys import camera_status_key
from schemas.messages import SCHEMA_VERSION, DeadLetter, Detections, Frame, Match, Tracklet
from schemas.topics import DEADLETTER, DETECTIONS, FRAMES, MATCHES, TRACKLETS, Topic
from service.settings import KafkaSettings
from tracker.core import TrackerParams

POLL_S = 0.25
"""How often :func:`wait_for` looks again: fast enough for second-scale faults,
slow enough not to load Redis or the broker."""

GARBAGE = b"\xc1 this is not msgpack \xff\x00"
"""A poison payload: 0xc1 is the one byte msgpack never uses, so no decoder can read it."""

WRONG_VERSION = SCHEMA_VERSION + 1
"""A schema version this build does not understand (a producer from the future)."""

DEFAULT_TRACKER_STATE_PREFIX = "crosscam:tracker:state:"

_KV = re.compile(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)")


class FaultTimeout(AssertionError):
    """A condition a fault test waits for did not hold before its deadline."""


class LossError(AssertionError):
    """A live run lost, doubled or renumbered something it must not."""


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, period_s: float = POLL_S
) -> float:
    """Poll ``predicate`` until it holds; returns the seconds it took.

    Raises:
        FaultTimeout: ``what`` did not happen within ``timeout_s``.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise FaultTimeout(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(period_s)


def free_port_range(n: int, low: int = 20_000, high: int = 60_000) -> int:
    """The first of ``n`` consecutive TCP ports nothing listens on right now."""
    for base in range(low, high - n, n):
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports in [{low}, {high})")


def camera_status(redis_url: str, cameras: list[str]) -> dict[str, dict[str, str]]:
    """Each camera's ingest status hash (empty when absent or Redis is unreachable)."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2.0)
    try:
        out: dict[str, dict[str, str]] = {}
        for cam in cameras:
            try:
                raw = client.hgetall(camera_status_key(cam))
                out[cam] = {str(k): str(v) for k, v in raw.items()}  # type: ignore[union-attr]
            except redis.RedisError:
                out[cam] = {}
        return out
    finally:
        client.close()


def frames_published(redis_url: str, camera: str) -> int:
    """Frames the camera's ingest says it published (0 when unknown)."""
    status = camera_status(redis_url, [camera])[camera]
    return int(status.get("frames_published", 0) or 0)


def checkpoint_written(
    redis_url: str, camera: str, prefix: str = DEFAULT_TRACKER_STATE_PREFIX
) -> bool:
    """True when the tracker's checkpoint key of ``camera`` exists."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2.0)
    try:
        return bool(client.exists(f"{prefix}{camera}"))
    except redis.RedisError:
        return False
    finally:
        client.close()


def count_matches(bootstrap: str, kind: str) -> int:
    """How many events of ``kind`` (``new_identity``, ``link`` ...) the matches topic holds."""
    records = asyncio.run(pipeline.read_topic(bootstrap, MATCHES.name, timeout_s=10.0))
    return sum(1 for m in pipeline.decode_all(records, Match) if m.kind == kind)


def redis_run_id(redis_url: str) -> str:
    """The server's ``run_id``: it changes when Redis restarts."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2.0)
    try:
        return str(client.info("server")["run_id"])
    finally:
        client.close()


def poison_payloads(topic: Topic, camera_id: str) -> list[tuple[str, bytes]]:
    """(kind, bytes) of the poison for ``topic``: garbage, and a well-formed message of
    the topic's type that claims a schema version this build does not know."""
    now = time.time_ns()
    wrong: msgspec.Struct
    if topic == FRAMES:
        wrong = Frame(v=WRONG_VERSION, camera_id=camera_id, seq=10**9, ts_capture_ns=now)
    elif topic == DETECTIONS:
        wrong = Detections(
            v=WRONG_VERSION, camera_id=camera_id, seq=10**9, ts_capture_ns=now, width=1, height=1
        )
    elif topic == TRACKLETS:
        wrong = Tracklet(
            v=WRONG_VERSION,
            camera_id=camera_id,
            tracklet_id=f"{camera_id}:999999:{now}",
            track_id=999_999,
            ts_start_ns=now,
            ts_end_ns=now,
        )
    else:
        raise ValueError(f"no poison for {topic.name}")
    return [("garbage", GARBAGE), ("wrong_version", encode(wrong))]


async def _produce(bootstrap: str, topic: str, key: bytes, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def poison(bootstrap: str, topic: Topic, camera_id: str) -> list[str]:
    """Produce the poison of ``topic`` keyed by ``camera_id`` (so it lands in a live
    camera's partition, between its real messages); returns the kinds sent."""
    payloads = poison_payloads(topic, camera_id)
    asyncio.run(_produce(bootstrap, topic.name, camera_id.encode(), [v for _, v in payloads]))
    return [k for k, _ in payloads]


def kill_for_good(sup: Supervisor, name: str, sig: int = signal.SIGKILL) -> int:
    """Signal a supervised child and keep the supervisor from restarting it.

    A crashed replica that stays down is the case where the consumer group
    must move its partitions to the others. Returns the pid signalled.
    """
    child = sup.children[name]
    pid = sup.pids()[name]
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    child.enabled = False  # the supervisor's poll skips disabled children
    sup.signal(name, sig)
    return pid


def log_events(log_file: Path, event: str) -> list[dict[str, str]]:
    """The ``key=value`` fields of every line of ``log_file`` logging ``event``."""
    if not log_file.exists():
        return []
    out = []
    for line in log_file.read_text(errors="replace").splitlines():
        parts = line.split(" ", 4)
        if len(parts) >= 4 and parts[3] == event:
            fields = {k: v.strip("'\"") for k, v in _KV.findall(parts[4] if len(parts) > 4 else "")}
            fields["_time"] = parts[0]
            out.append(fields)
    return out


def stored_tracklet_ids(reid_data_dir: Path, dim: int = 512) -> list[str]:
    """Every tracklet id in the ReID stage's embedded store (open it only after reid stopped)."""
    from reid.qdrant_store import open_store
    from reid.store import Scope

    store = open_store("edge", reid_data_dir / "qdrant-edge", dim)
    try:
        return [t.tracklet_id for t in store.scroll(Scope())]
    finally:
        store.close()


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def as_json(obj: Any) -> Any:
    """Sets and tuples as sorted lists, for printing a result."""
    if isinstance(obj, dict):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(as_json(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [as_json(v) for v in obj]
    return obj


@dataclass
class Topics:
    """Everything a run left on the topics, decoded (undecodable records skipped)."""

    detections: list[Detections]
    tracklets: list[Tracklet]
    """Every copy, replays included."""
    matches: list[Match]
    dead_letters: list[DeadLetter]

    @classmethod
    def read(cls, bootstrap: str) -> Topics:
        def read(topic: str, typ: type) -> list[Any]:
            return pipeline.decode_all(asyncio.run(pipeline.read_topic(bootstrap, topic)), typ)

        return cls(
            read(DETECTIONS.name, Detections),
            read(TRACKLETS.name, Tracklet),
            read(MATCHES.name, Match),
            read(DEADLETTER.name, DeadLetter),
        )


def ingest_final_counts(log_dir: Path, cameras: list[str]) -> dict[str, int]:
    """Frames each camera's ingest says it published, from its ``ingest_stopped`` log event
    (the producer's own final count, eos excluded; summed over restarts).

    Raises:
        LossError: a camera's ingest logged no final count (it did not stop cleanly).
    """
    out: dict[str, int] = {}
    for cam in cameras:
        events = log_events(log_dir / f"ingest-{cam}.log", "ingest_stopped")
        if not events:
            raise LossError(f"{cam}: ingest logged no final count (ingest_stopped)")
        out[cam] = sum(int(e["frames_published"]) for e in events)
    return out


def _accounted_seqs(topics: Topics) -> dict[str, set[int]]:
    """Per camera, the frame seqs detected or dead-lettered as a readable frame (eos excluded)."""
    out: dict[str, set[int]] = {}
    for d in topics.detections:
        if not d.eos:
            out.setdefault(d.camera_id, set()).add(d.seq)
    for dl in topics.dead_letters:
        if dl.topic == FRAMES.name:
            with contextlib.suppress(DecodeError):
                f = decode(Frame, dl.value)
                if not f.eos:
                    out.setdefault(f.camera_id, set()).add(f.seq)
    return out


def check_accounting(summary: dict[str, Any], topics: Topics, redeliveries: int = 0) -> None:
    """Every frame ingest published reached the topic and was detected or dead-lettered,
    checked against ingest's own count, not against the records found on the topic.

    * no frame record is unaccounted for (:func:`crosscam.demo.frame_accounting`);
    * per camera, the distinct frames on the topic are exactly the ``frames_published``
      of ingest's final log event, and at least its last status snapshot;
    * per camera, the seqs detected (or dead-lettered) are exactly ``0 .. published-1``:
      ingest numbers frames as it publishes them, so a hole is a lost frame and a seq
      past the end an invented one;
    * detections repeated (same camera and seq twice) stay within what at-least-once
      allows: a frame record the producer repeated is detected again, and each time the
      detector's partitions are handed over before it committed (``redeliveries``, e.g.
      after a broker outage) at most one uncommitted batch (``kafka.max_batch_records``)
      is detected again. A fault-free run has none.

    Raises:
        LossError: naming the camera and the count that is off.
    """
    acc = summary["accounting"]
    if acc["frames_unaccounted"]:
        raise LossError(f"frames unaccounted for: {acc}")
    cams = sorted(summary["cameras"])
    final = ingest_final_counts(Path(summary["results"]["logs"]), cams)
    seqs = _accounted_seqs(topics)
    for cam in cams:
        on_topic = acc["frames_on_topic_per_camera"].get(cam, 0)
        snapshot = int(summary["cameras"][cam].get("frames_published") or 0)
        if on_topic != final[cam] or on_topic < snapshot:
            raise LossError(
                f"{cam}: {on_topic} frames on the topic, ingest published {final[cam]} "
                f"(status snapshot {snapshot})"
            )
        got, want = seqs.get(cam, set()), set(range(final[cam]))
        if got != want:
            raise LossError(
                f"{cam}: seqs missing {sorted(want - got)[:20]}, unexpected {sorted(got - want)[:20]}"
            )
    allowed = acc["frame_records_repeated"] + redeliveries * KafkaSettings().max_batch_records
    if acc["duplicate_detections"] > allowed:
        raise LossError(
            f"{acc['duplicate_detections']} frames detected twice, at-least-once allows "
            f"{allowed} ({redeliveries} redeliveries): {acc}"
        )


def detections_tracked(topics: Topics, min_score: float | None = None) -> dict[str, float]:
    """Per camera, the share of confident detection boxes that ended in a tracklet.

    A detection box (score ≥ ``min_score``, by default the tracker's ``high_score``: the
    boxes that start and carry tracks) counts as tracked when a tracklet of its camera
    has a box at IoU ≥ 0.5 in the same frame. Tracklets are taken once each.
    """
    threshold = TrackerParams().high_score if min_score is None else min_score
    tracked: dict[tuple[str, int], list[np.ndarray]] = {}
    for t in pipeline.latest_tracklets(topics.tracklets):
        for seq, box in zip(t.frame_seqs, t.boxes_array(), strict=True):
            tracked.setdefault((t.camera_id, seq), []).append(box)
    hits: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for d in {(d.camera_id, d.seq): d for d in topics.detections if not d.eos}.values():
        boxes = d.boxes_array().reshape(-1, 4)[d.scores_array() >= threshold]
        total[d.camera_id] += len(boxes)
        mine = tracked.get((d.camera_id, d.seq))
        if len(boxes) and mine:
            hits[d.camera_id] += int((box_iou(boxes, np.stack(mine)).max(axis=1) >= 0.5).sum())
    return {cam: round(hits[cam] / n, 3) for cam, n in sorted(total.items()) if n}


def check_detections_tracked(topics: Topics, min_share: float) -> dict[str, float]:
    """Every camera's confident detections mostly end in tracklets (see
    :func:`detections_tracked`), and every tracklet frame is a frame that was detected.

    Returns the shares per camera.

    Raises:
        LossError: a camera below ``min_share``, or a tracklet on frames never detected.
    """
    detected = {(d.camera_id, d.seq) for d in topics.detections if not d.eos}
    for t in pipeline.latest_tracklets(topics.tracklets):
        invented = [q for q in t.frame_seqs if (t.camera_id, q) not in detected]
        if invented:
            raise LossError(f"{t.tracklet_id}: frames never detected {invented[:10]}")
    shares = detections_tracked(topics)
    cams = {d.camera_id for d in topics.detections if not d.eos and len(d.scores_array())}
    low = {c: shares.get(c, 0.0) for c in cams if shares.get(c, 0.0) < min_share}
    if low:
        raise LossError(
            f"detections not ending in tracklets (floor {min_share}): {low} of {shares}"
        )
    return shares


def merged_link_precision(summary: dict[str, Any], tracklets: list[Tracklet]) -> float:
    """Link precision the run's own tracklets would score if every one had one identity:
    the precision a linker merging everyone reaches, so a floor must sit above it."""
    scn = Path(summary["results"]["scenario"])
    one = dict.fromkeys((t.tracklet_id for t in tracklets), "everyone")
    return float(pipeline.score_live(scn, tracklets, one)["link_precision"])


def check_tracklets_and_identities(topics: Topics, reid_dir: Path) -> list[Tracklet]:
    """No tracklet lost or doubled downstream of the tracker; ids never renumbered.

    * per camera a track id names one tracklet (a tracker that lost its state
      would count from 1 again and reuse ids with new start times);
    * every tracklet with vectors is in the ReID store exactly once and has an
      identity on the matches topic; none was given one twice (replays are absorbed);
    * no ``new_identity`` event reuses a global id already given out.

    Returns the tracklets, one copy each.

    Raises:
        LossError: naming what broke.
    """
    latest = pipeline.latest_tracklets(topics.tracklets)
    by_track: dict[tuple[str, int], set[str]] = {}
    for t in latest:
        by_track.setdefault((t.camera_id, t.track_id), set()).add(t.tracklet_id)
    reused = {k: v for k, v in by_track.items() if len(v) > 1}
    if reused:
        raise LossError(f"track ids reused (tracker state lost): {reused}")
    stored = stored_tracklet_ids(reid_dir)
    doubled = [t for t, n in Counter(stored).items() if n > 1]
    if doubled:
        raise LossError(f"the ReID store holds tracklets twice: {doubled}")
    with_vectors = {t.tracklet_id for t in latest if t.crops or t.embedding_dim}
    if not with_vectors <= set(stored):
        raise LossError(
            f"tracklets missing from the ReID store: {sorted(with_vectors - set(stored))}"
        )
    ids = pipeline.identities_from_matches(topics.matches)
    if not with_vectors <= set(ids):
        raise LossError(f"tracklets without an identity: {sorted(with_vectors - set(ids))}")
    if not set(ids) <= {t.tracklet_id for t in latest}:
        raise LossError("an identity names a tracklet that is not on the tracklets topic")
    given = Counter(m.tracklet_id for m in topics.matches if m.kind in ("new_identity", "link"))
    twice = {t: n for t, n in given.items() if n > 1}
    if twice:
        raise LossError(f"tracklets given an identity more than once: {twice}")
    gids: set[str] = set()
    for m in topics.matches:
        if m.kind == "new_identity" and m.global_id in gids:
            raise LossError(f"global id {m.global_id} given out twice ({m.tracklet_id})")
        gids.add(m.global_id)
    return latest
