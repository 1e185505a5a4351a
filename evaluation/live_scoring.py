"""Helpers to drive and judge the whole live pipeline (demo, e2e tests, bench).

* :func:`reset_state` — empty topics, tracker checkpoints and camera status
  so a run starts from nothing (local stack only: it deletes data).
* :func:`read_topic` — every message of a topic, up to its end offsets now.
* :func:`group_lag` — how far a consumer group is behind.
* :func:`identities_from_matches` — the final global identity of every
  tracklet, by replaying the public match events as any subscriber would.
* :func:`score_live` — tracklets against a scenario's ground truth. Each
  tracklet box is placed on its scenario frame by the frame's source index
  (ingest puts it in every frame message: frame-exact), or, for frames
  without one, by each camera's offset found by box agreement with the
  ground truth; then the ReID evaluation scores links.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import cv2
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupLoadInProgressError

from common.boxes import box_iou
from schemas.codec import DecodeError, decode
from schemas.messages import Frame, Match, Tracklet
from schemas.topics import TOPICS


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="crosscam-pipeline")
    await admin.start()
    return admin


async def _list_groups(admin: AIOKafkaAdminClient, attempts: int = 50) -> list[Any]:
    """Consumer groups; a broker that has just started answers "loading" for a moment."""
    for _ in range(attempts - 1):
        try:
            return list(await admin.list_consumer_groups())
        except GroupLoadInProgressError:
            await asyncio.sleep(0.2)
    return list(await admin.list_consumer_groups())


async def reset_state(bootstrap: str, redis_url: str) -> None:
    """Delete every crosscam topic and consumer group, and crosscam keys in Redis."""
    import redis

    admin = await _admin(bootstrap)
    try:
        existing = [t for t in await admin.list_topics() if t in TOPICS]
        if existing:
            await admin.delete_topics(existing)
        groups = [g[0] for g in await _list_groups(admin) if str(g[0]).startswith("crosscam-")]
        if groups:
            with contextlib.suppress(Exception):
                await admin.delete_consumer_groups(groups)
        for _ in range(100):  # topic deletion is asynchronous in the broker
            if not set(await admin.list_topics()) & set(TOPICS):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter("crosscam:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from fresh cluster metadata (none if it does not exist)."""
    cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - no public equivalent
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """All records of ``topic`` from the beginning to the end offsets at call time."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while loop.time() < deadline and await behind():
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(m for m in msgs if m.offset < end[TopicPartition(m.topic, m.partition)])
        return out
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Messages of ``topic`` not yet committed by ``group`` (None: group has no commits)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        if not tps:
            return None
        end = await consumer.end_offsets(tps)
        lag, seen = 0, False
        for tp in tps:
            c = await consumer.committed(tp)
            if c is None:
                lag += end[tp]
            else:
                seen = True
                lag += max(0, end[tp] - c)
        return lag if seen or sum(end.values()) == 0 else sum(end.values())
    finally:
        await consumer.stop()


def decode_all(records: list[Any], cls: type) -> list[Any]:
    out: list[Any] = []
    for r in records:
        with contextlib.suppress(DecodeError):
            out.append(decode(cls, r.value))
    return out


def latest_tracklets(tracklets: list[Tracklet]) -> list[Tracklet]:
    """One copy per tracklet id (a replayed tracklet overwrites), in first-seen order."""
    seen: dict[str, Tracklet] = {}
    for t in tracklets:
        seen[t.tracklet_id] = t
    return list(seen.values())


def identities_from_matches(matches: list[Match]) -> dict[str, str]:
    """tracklet id → global id after applying every event in publication order
    (``order_ns``; events without one keep the order given, before those with one)."""
    of: dict[str, str] = {}
    for m in sorted(matches, key=lambda e: e.order_ns):  # stable: ties keep their order
        if m.kind in ("new_identity", "link", "split") and m.tracklet_id:
            of[m.tracklet_id] = m.global_id
        elif m.kind == "merge":
            old = set(m.merged_ids)
            for tid, gid in of.items():
                if gid in old:
                    of[tid] = m.global_id
    return of


def _hits(
    boxes_by_key: dict[int, np.ndarray],
    gt_by_frame: dict[int, np.ndarray],
    off: int,
    n_frames: int,
    keys: list[int],
) -> int:
    """System boxes (at ``keys``) whose best GT box in frame ``(key + off) % n_frames``
    has IoU >= 0.5."""
    n = 0
    for key in keys:
        g = gt_by_frame.get((key + off) % n_frames)
        boxes = boxes_by_key[key]
        if g is not None and len(boxes):
            n += int((box_iou(boxes, g).max(axis=1) >= 0.5).sum())
    return n


def align_offset(
    boxes_by_seq: dict[int, np.ndarray], gt_by_frame: dict[int, np.ndarray], n_frames: int
) -> tuple[int, float]:
    """The shift ``frame = (seq + offset) % n_frames`` that makes a camera's boxes agree best with its GT.

    The fallback for frames without a source index (older ingest): a live
    camera is a recording that ingest joined part-way through, so its
    sequence numbers start at an unknown frame and wrap at the end. Score =
    number of system boxes whose best GT box in the shifted frame has
    IoU >= 0.5 (searched on every 4th frame, then measured on all). Returns
    (offset, fraction of boxes matched at that offset).
    """
    seqs = sorted(boxes_by_seq)
    if not seqs:
        return 0, 0.0
    best = max(
        range(n_frames), key=lambda off: _hits(boxes_by_seq, gt_by_frame, off, n_frames, seqs[::4])
    )
    total = sum(len(boxes_by_seq[s]) for s in seqs) or 1
    return best, _hits(boxes_by_seq, gt_by_frame, best, n_frames, seqs) / total


JOIN_SEARCH_FRAMES = 64
"""How many frames into a recording a live camera's first frame may be (ingest joined late)."""
_MATCH_SIZE = (96, 72)


def _small_grey(image: np.ndarray) -> np.ndarray:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, _MATCH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def join_offset_by_picture(
    video: str, frame: Frame, search: int = JOIN_SEARCH_FRAMES
) -> int | None:
    """Recording frame minus stream-clock index, measured on the picture.

    The stream clock counts frames from the first one ingest received; a
    recording served live may have been a few frames in when ingest joined.
    The recording frame (among ``search`` from ``frame.source_index``) that
    looks most like ``frame``'s JPEG gives that constant. None if the frame
    has no inline JPEG or the video cannot be read.
    """
    if not frame.jpeg or frame.source_index < 0:
        return None
    img = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    target = _small_grey(img)
    diffs: list[float] = []
    cap = cv2.VideoCapture(video)
    try:
        for i in range(frame.source_index + search):
            ok, image = cap.read()
            if not ok:
                break
            if i >= frame.source_index:
                diffs.append(float(np.abs(_small_grey(image) - target).mean()))
    finally:
        cap.release()
    return int(np.argmin(diffs)) if diffs else None


def source_indexes(frames: list[Frame]) -> dict[str, dict[int, int]]:
    """camera -> seq -> the frame's index in its source, from the frames topic.

    The first copy of a ``(camera, seq)`` wins (a producer retry repeats it);
    frames without an index (older ingest, end of stream) are left out.
    """
    out: dict[str, dict[int, int]] = defaultdict(dict)
    for f in frames:
        if not f.eos and f.source_index >= 0:
            out[f.camera_id].setdefault(f.seq, f.source_index)
    return dict(out)


def _frame_of_seq(
    seqs: dict[int, list[np.ndarray]],
    gts: dict[int, np.ndarray],
    n_frames: int,
    index_of: dict[int, int],
    join: int | None,
) -> tuple[dict[int, int], dict[str, Any]]:
    """seq -> scenario frame for one camera, and how it was found.

    By the frames' source index when every seq has one, plus the join offset
    measured on the picture (:func:`join_offset_by_picture`; 0 when it could
    not be measured): frame-exact, nothing guessed from the boxes. The offset
    that boxes alone would then choose is reported as a check (0 when the
    mapping is right). Otherwise by :func:`align_offset`.
    """
    boxes = {s: np.stack(v) for s, v in seqs.items()}
    if seqs and all(s in index_of for s in seqs):
        shift = join or 0
        by_index = {index_of[s] + shift: b for s, b in boxes.items()}
        keys = sorted(by_index)
        total = sum(len(b) for b in by_index.values()) or 1
        check, _ = align_offset(by_index, gts, n_frames)
        info = {
            "method": "source_index",
            "join_offset_by_picture": join,
            "boxes_matching_gt": round(_hits(by_index, gts, 0, n_frames, keys) / total, 3),
            "check_offset_by_boxes": check,
        }
        return {s: (index_of[s] + shift) % n_frames for s in seqs}, info
    off, agree = align_offset(boxes, gts, n_frames)
    info = {"seq_to_frame_offset": off, "boxes_matching_gt": round(agree, 3)}
    return {s: (s + off) % n_frames for s in seqs}, info


def _join_offset(scn: Any, cam: str, frames: list[Frame]) -> int | None:
    """The camera's join offset, from its first frame on the stream's clock and its
    recording (if any).

    Frames with a pts only: the one or two frames before a stream's first pts are
    placed one period apart before it, which is a guess (an RTSP server may have
    held a stale preroll frame and skipped some after it; seen in a demo run).
    """
    indexed = [
        f for f in frames if f.camera_id == cam and f.source_index >= 0 and f.pts_ns > 0 and f.jpeg
    ]
    if not indexed or cam not in scn.topology.cameras:
        return None
    video = scn.topology.source_path(cam)
    if not video or "://" in video:
        return None
    return join_offset_by_picture(video, min(indexed, key=lambda f: f.source_index))


def score_live(
    scenario_dir: Any,
    tracklets: list[Tracklet],
    predicted: dict[str, str],
    frames: list[Frame] | None = None,
) -> dict[str, Any]:
    """Link precision/recall/F1 and cross-camera IDF1 of live tracklets vs the scenario's GT.

    ``frames``: the frames topic's messages; where they carry source indexes,
    each tracklet box is placed on its exact scenario frame (see
    :func:`_frame_of_seq`), else each camera's offset is found by box agreement.
    """
    from evaluation.mtmc_scoring import (
        Sample,
        Scenario,
        gt_boxes,
        label_live,
        link_scores,
        mtmc_idf1,
    )

    scn = Scenario.load(scenario_dir)
    index_of = source_indexes(frames or [])
    by_cam: dict[str, dict[int, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for t in tracklets:
        for seq, box in zip(t.frame_seqs, t.boxes_array(), strict=True):
            by_cam[t.camera_id][seq].append(np.asarray(box, np.float64))
    frame_of: dict[str, dict[int, int]] = {}
    alignment: dict[str, dict[str, Any]] = {}
    for cam, seqs in by_cam.items():
        gts = {f: b for f, (b, _ids) in gt_boxes(scn, cam).items()} if cam in scn.cameras else {}
        join = _join_offset(scn, cam, frames or [])
        frame_of[cam], alignment[cam] = _frame_of_seq(
            seqs, gts, scn.frames, index_of.get(cam, {}), join
        )
    samples = []
    for t in tracklets:
        boxes = {
            frame_of[t.camera_id][seq]: np.asarray(b, np.float64)
            for seq, b in zip(t.frame_seqs, t.boxes_array(), strict=True)
        }
        samples.append(Sample(tracklet=t, gt_identity=None, boxes=boxes))
    label_live(scn, samples)
    pred = {
        s.tracklet.tracklet_id: predicted.get(
            s.tracklet.tracklet_id, f"unlinked:{s.tracklet.tracklet_id}"
        )
        for s in samples
    }
    out: dict[str, Any] = link_scores(samples, pred)
    out["idf1"] = mtmc_idf1(scn, samples, pred)
    out["identities"] = len(set(pred.values()))
    out["gt_identities_seen"] = len({s.gt_identity for s in samples if s.gt_identity})
    out["tracklets"] = len(samples)
    out["alignment"] = alignment
    return out
