"""Retention over the real embedded store: exactly what ended before the limit goes, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from reid.qdrant_store import open_store
from reid.retention import NS_PER_S, RetentionPolicy, apply, inside, plan
from reid.retention_job import RetentionSettings, run_once
from reid.store import Scope, StoredTracklet
from schemas.retention import AUDIT_TOPIC, TOPIC_RETENTION_MS, topic_configs
from schemas.topics import TOPICS

DIM = 8
DAY_NS = 86_400 * NS_PER_S
NOW_NS = 1_800_000_000 * NS_PER_S


def stored(tid: str, end_days_ago: float, thumbs: Path, length_s: float = 60.0) -> StoredTracklet:
    end = NOW_NS - int(end_days_ago * DAY_NS)
    ref = f"cam/{tid}.jpg"
    path = thumbs / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 jpeg of " + tid.encode())
    os.utime(path, ns=(end, end))  # written when the tracklet ended
    v = np.random.default_rng(len(tid)).normal(size=DIM).astype(np.float32)
    return StoredTracklet(tid, "cam", end - int(length_s * NS_PER_S), end, f"g-{tid}",
                          vector=v / np.linalg.norm(v), thumbnail_ref=ref)  # fmt: skip


@pytest.mark.parametrize("kind", ["edge", "local"])
def test_removes_exactly_what_ended_before_the_limit(tmp_path: Path, kind: str) -> None:
    thumbs = tmp_path / "thumbnails"
    store = open_store(kind, tmp_path / "store", DIM)
    ages = {"old-a": 45.0, "old-b": 30.01, "edge-in": 29.99, "new": 1.0, "now": 0.0}
    store.upsert([stored(t, a, thumbs) for t, a in ages.items()])
    # started 31 days ago but ended yesterday: still in use, kept
    store.upsert([stored("long", 1.0, thumbs, length_s=31 * 86_400)])
    # a thumbnail nobody references, older than the limit (a crash between write and upsert)
    orphan = thumbs / "cam" / "orphan.jpg"
    orphan.write_bytes(b"x")
    os.utime(orphan, ns=(NOW_NS - 40 * DAY_NS,) * 2)
    # a recent orphan stays (its tracklet may be on its way)
    fresh = thumbs / "cam" / "fresh.jpg"
    fresh.write_bytes(b"x")
    os.utime(fresh, ns=(NOW_NS,) * 2)

    report = run_once(store, thumbs, RetentionPolicy(max_age_s=30 * 86_400), now_ns=NOW_NS)

    left = {t.tracklet_id for t in store.scroll(Scope())}
    assert left == {"edge-in", "new", "now", "long"}
    assert report.tracklets == 2 and report.thumbnails == 3
    files = {p.name for p in thumbs.rglob("*.jpg")}
    assert files == {"edge-in.jpg", "new.jpg", "now.jpg", "long.jpg", "fresh.jpg"}
    # idempotent: a second pass finds nothing
    again = run_once(store, thumbs, RetentionPolicy(max_age_s=30 * 86_400), now_ns=NOW_NS)
    assert (again.tracklets, again.thumbnails) == (0, 0)
    store.close()


def test_dry_run_counts_and_changes_nothing(tmp_path: Path) -> None:
    thumbs = tmp_path / "thumbnails"
    store = open_store("edge", tmp_path / "store", DIM)
    store.upsert([stored("old", 60, thumbs), stored("new", 1, thumbs)])
    p = plan(store, thumbs, RetentionPolicy(max_age_s=30 * 86_400), NOW_NS)
    report = apply(store, p, dry_run=True)
    assert (report.tracklets, report.thumbnails, report.dry_run) == (1, 1, True)
    assert store.count() == 2 and len(list(thumbs.rglob("*.jpg"))) == 2
    store.close()


def test_a_thumbnail_ref_outside_the_folder_is_never_deleted(tmp_path: Path) -> None:
    thumbs = tmp_path / "thumbnails"
    thumbs.mkdir()
    victim = tmp_path / "precious.jpg"
    victim.write_bytes(b"keep me")
    store = open_store("edge", tmp_path / "store", DIM)
    t = stored("old", 60, thumbs)
    t.thumbnail_ref = "../precious.jpg"
    store.upsert([t])
    run_once(store, thumbs, RetentionPolicy(max_age_s=86_400), now_ns=NOW_NS)
    assert victim.exists() and store.count() == 0
    assert inside(thumbs, "../precious.jpg") is None
    assert inside(thumbs, "/etc/passwd") is None
    assert inside(thumbs, "") is None
    assert inside(thumbs, "cam/x.jpg") == (thumbs / "cam" / "x.jpg").resolve()
    store.close()


def test_every_topic_has_a_short_default_retention() -> None:
    assert set(TOPIC_RETENTION_MS) == set(TOPICS) | {AUDIT_TOPIC}
    assert RetentionSettings().topic_retention_ms() == TOPIC_RETENTION_MS
    hour = 3_600_000
    assert TOPIC_RETENTION_MS["crosscam.frames.v1"] == hour
    assert TOPIC_RETENTION_MS["crosscam.detections.v1"] == hour
    assert TOPIC_RETENTION_MS["crosscam.tracklets.v1"] == 24 * hour
    assert topic_configs("crosscam.matches.v1") == {"retention.ms": str(30 * 24 * hour)}
    assert topic_configs("not.a.topic") == {}


@pytest.mark.parametrize("field", ["frames_hours", "store_days"])
def test_retention_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError):
        RetentionSettings(**{field: 0})


def test_topic_limits_one_rule_kafka_entries_win() -> None:
    """The retention job must not undo an explicit kafka.retention_ms entry."""
    from reid.retention_job import topic_limits
    from reid.settings import RetentionSettings
    from service.settings import KafkaSettings

    limits = topic_limits(RetentionSettings(frames_hours=2.0),
                          KafkaSettings(retention_ms={"crosscam.frames.v1": 600_000}))  # fmt: skip
    assert limits["crosscam.frames.v1"] == 600_000
    assert limits["crosscam.detections.v1"] == 3_600_000
    assert limits["crosscam.matches.v1"] == 30 * 24 * 3_600_000
