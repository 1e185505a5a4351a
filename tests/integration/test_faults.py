"""Faults the live pipeline must survive, each on a real run of every stage.

Every test runs the whole pipeline (:func:`crosscam.demo.run_live`: PETS09
views as looping RTSP cameras, ingest → detector → tracker → ReID as
supervised processes) over a short replay and injects its faults from
``LiveRun.during`` once the stages are up; then it checks recovery and that
nothing was lost:

* ``test_tracker_replica_killed_and_poison`` — two tracker replicas, the one
  that owns the cameras is SIGKILLed mid-stream (and not restarted): the
  other takes its partitions and restores the checkpoints (same track ids,
  no renumbering); duplicates are absorbed (ReID store and identities hold
  each tracklet once). In the same run a poison message of each kind
  (garbage, wrong schema version) lands on the frames, detections and
  tracklets topics: each is dead-lettered with its reason, nothing else is.
* ``test_kafka_outage_and_camera_never_connects`` — the broker is stopped for
  20 s and started again: every stage recovers by itself, no frame is lost
  (ingest's outbox holds the outage), every frame is detected. A camera
  whose URL has no mount stays ``connecting`` in Redis and the rest completes.
* ``test_redis_restart_and_camera_drop`` — Redis (no persistence) restarted
  mid-stream: stages reconnect, tracker checkpoints are written again, global
  ids stay unique. A camera unpublished and published again: ingest
  reconnects and its frames flow again.

The broker and Redis faults run on a private stack (fresh ports and state
dir) so the session's stack that other tests use is never taken down.

Run: ``pytest -s -m integration tests/integration/test_faults.py``.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crosscam.demo import LiveRun, run_live
from crosscam.supervisor import Supervisor
from devstack import faults
from devstack import stack as stack_mod
from devstack.stack import StackConfig
from evaluation import live_scoring as pipeline
from schemas.topics import DETECTIONS, FRAMES, TRACKLETS
from tests.stack_fixtures import live_run_on_free_ports, private_stack_config, server_state_dir

pytestmark = pytest.mark.integration

FRAMES_PER_RUN = 150
"""~21 s of each camera at 7 fps (the recording plays once): room for a fault and
its recovery mid-stream, short enough that the runs stay a few minutes in CI."""
OUTAGE_RUN_FRAMES = 350
"""The broker outage needs a longer recording (50 s): ~5 s in, down 20 s, and the
broker back (its start takes 5-15 s) while the cameras still play, so the test sees
live frames flow again, not only the outbox emptying. Two cameras keep it short."""
OUTAGE_RUN_CAMERAS = 2
FAULT_AT_FRAMES = 35
"""Faults start once every camera published this many frames (~5 s): mid-stream,
with every stage consuming and tracks open."""
RUN_TIMEOUT_S = 540.0
"""One run (pass, fault, drain) on a loaded 2-core runner; ~2-3 minutes alone."""
FAULT_TIMEOUT_S = 120.0
"""Longest wait for one step of a fault (a takeover, a reconnect) to show."""
METRICS_PORTS = 16
KAFKA_OUTAGE_S = 20.0
"""How long the broker stays down: twice the consumers' session timeout (10 s),
so every group rebalances, and longer than a produce request's timeout (15 s)."""
OUTBOX_FRAMES = 1024
"""Ingest's in-memory queue for the outage test. The broker is unreachable for its
stop, the 20 s down and its start (5-15 s, more on a loaded runner): up to ~60 s x
7.4 fps = 450 frames must wait there, so nothing is dropped (the default 64 drops,
and counts, the oldest). 256 overflowed by 8 frames once in CI on a loaded runner."""
CAMERA_DOWN_MIN_S = 3.0
"""A dropped camera stays unpublished at least this long after ingest noticed."""
OFFLINE_CAMERA = "cam9"

# Floors for runs with a fault: the worst measured run less 0.05 (times: the figure the
# README quotes plus a few seconds; the FAULT_TIMEOUT_S above only bounds the waiting).
# Provisional from the runs on record; the lead re-measures on the final code and fills
# the `measured:` lines. 150 frames give few cross-camera pairs (recall moves in steps of
# 0.1-0.25), and a takeover may cut a few tracks in two.
MIN_LINK_PRECISION_WITH_FAULT = 0.45
"""measured: 0.50 with the replica kill (branch `scorers`, load 26), 0.778 / 0.778 (final
code, two runs, load 1-4), floor = worst - 0.05"""
MIN_LINK_RECALL_WITH_FAULT = 0.32
"""measured: 0.50-0.89 with the replica kill (a0ca941), 0.50 (scorers), 0.875 / 0.875 (a
later build); then 0.40 (CI of an earlier build, better_ratio 1.1), 0.9 / 0.5 / 0.5 / 0.9
(ad78688), 0.375 (CI of e4f0f77), 0.9 / 0.875 / 0.875 / 0.9 (e4f0f77) and 0.4 / 0.5 /
0.875 / 0.9 (whole-window re-linking): two modes, 0.4-0.5 and 0.875-0.9, on every build,
with 8-10 true links a run (one link moves recall by 0.1-0.125). Floor = worst - 0.05; a
linker that links nothing fails it, and precision over merging everyone fails one that
links everything."""
MIN_IDF1_WITH_FAULT = 0.58
"""measured: 0.63-0.69 with the replica kill (a0ca941), 0.644 (scorers), 0.751 / 0.751 (final
code), floor = worst - 0.06"""
MIN_PRECISION_OVER_MERGED = 0.05
"""Link precision must beat, by this much, what the run's own tracklets score when every
one is given one identity: a linker that merges everyone fails."""
MIN_DETECTIONS_TRACKED_WITH_FAULT = 0.81
"""Share of each camera's confident detection boxes that end in a tracklet
(:func:`devstack.faults.detections_tracked`). measured: 0.967-1.0 with the replica kill,
0.977-1.0 fault-free (branch `scorers`, one run each); then, on a camera of the killed
replica, 0.866 (a local CI run of ccd252a), 0.928 / 0.952 / 0.952 (c2a96cc) and 0.887 / 0.962 /
0.959 with ``end_when_out_of_view`` off: the kill costs up to ~1 s of that camera's track
state by design (the frames between the last checkpoint, at most
``checkpoint_interval_s`` old, and the committed offset; see ``tracker/service.py``),
and what those frames' tracks then become varies with the moment of the kill. floor =
worst - 0.05, rounded down (0.90 was one run's 0.967 less 0.05 and failed in 2 of 10 runs)."""
MAX_TAKEOVER_S = 17.0
"""Kill to the survivor restoring the victim's cameras: the consumers' session timeout
(10 s) plus the rebalance and restore. measured: 12.7 s (branch `scorers`, load 26), 10.8 /
11.0 s (final code), bound = worst + ~4 s."""
MAX_FRAMES_FLOW_AGAIN_S = 5.0
"""Broker answering again to ingest publishing. measured: 1-2 s (README), 1.8 s (final code),
bound = 2 + 3 s.
(6.3 s seen on branch `scorers` at load average 26, in a run that also failed the checks
that predate this bound: ingest dropped 17-20 frames; not a representative machine.)"""
MAX_CHECKPOINTS_AGAIN_S = 5.0
"""Redis back to every tracker checkpoint written again: README quotes 0-2 s; bound = 2 + 3 s.
(38.3 s seen on branch `scorers` at load average 26, where the fault script itself could not
finish within the run: not a representative machine.)"""
MAX_STATUS_AGAIN_S = 7.0
"""Then every camera's status written again: README quotes 2-4 s; bound = 4 + 3 s."""
OUTAGE_REDELIVERIES = 2
"""Batches the detector may redo after the broker outage (its partitions handed over
before its commit went through): at most one per rebalance, and the outage causes the
members to time out and rejoin. Bounds the repeated detections (at-least-once)."""


def check_accuracy(s: dict[str, Any], tracklets: list[Any]) -> dict[str, float]:
    """The fault run's links and IDF1 against the floors, and precision above merging everyone."""
    acc = s["accuracy_vs_ground_truth"]
    merged = faults.merged_link_precision(s, tracklets)
    print(json.dumps({"link_precision_if_all_merged": merged}))
    assert acc["link_precision"] >= MIN_LINK_PRECISION_WITH_FAULT, acc
    assert acc["link_precision"] >= merged + MIN_PRECISION_OVER_MERGED, (merged, acc)
    assert acc["link_recall"] >= MIN_LINK_RECALL_WITH_FAULT, acc
    assert acc["idf1"] >= MIN_IDF1_WITH_FAULT, acc
    return {"merged_precision": merged}


@dataclass
class Fault:
    """Runs a fault script in ``during`` and keeps what it saw, or its error."""

    script: Callable[[Supervisor, dict[str, Any]], None]
    seen: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, sup: Supervisor) -> None:
        try:
            self.script(sup, self.seen)
        except BaseException:  # noqa: BLE001 - reported by check()
            self.error = traceback.format_exc()
        finally:
            self.done.set()

    def check(self) -> dict[str, Any]:
        assert self.done.is_set(), f"the fault script had not finished: {self.seen}"
        assert self.error is None, self.error
        return self.seen


def live_run(
    out: Path, during: Fault, cameras: int = 3, frames: int = FRAMES_PER_RUN, **kw: Any
) -> LiveRun:
    return live_run_on_free_ports(
        out, METRICS_PORTS, RUN_TIMEOUT_S, cameras=cameras, frames=frames, during=during, **kw
    )


def summary_line(summary: dict[str, Any], **extra: Any) -> str:
    keys = ("seconds", "messages", "accounting", "identities", "restarts", "cameras")
    acc = summary["accuracy_vs_ground_truth"]
    return json.dumps(
        {
            **{k: summary[k] for k in keys},
            "accuracy": {k: acc[k] for k in ("link_precision", "link_recall", "idf1")},
            **faults.as_json(extra),
        }
    )


# ---------------------------------------------------------------------------
# tracker replica SIGKILLed + poison on every topic (session stack)
# ---------------------------------------------------------------------------

POISONED = (FRAMES, DETECTIONS, TRACKLETS)
DEAD_LETTERING_STAGE = {FRAMES.name: "detector", DETECTIONS.name: "tracker", TRACKLETS.name: "reid"}


def _kill_tracker_and_poison(out: Path, bootstrap: str, redis_url: str) -> Fault:
    def script(sup: Supervisor, seen: dict[str, Any]) -> None:
        logs = out / "logs"
        replicas = [n for n in sup.children if n.startswith("tracker-")]
        cams = [n.removeprefix("ingest-") for n in sup.children if n.startswith("ingest-")]

        def opened(replica: str) -> set[str]:
            return {
                e["camera"]
                for e in faults.log_events(logs / f"{replica}.log", "camera_tracker_opened")
            }

        # mid-stream: a third of the pass published, and every camera checkpointed once
        faults.wait_for(
            lambda: all(faults.frames_published(redis_url, c) >= FRAMES_PER_RUN // 3 for c in cams),
            FAULT_TIMEOUT_S,
            "a third of the frames published",
        )
        faults.wait_for(
            lambda: all(faults.checkpoint_written(redis_url, c) for c in cams),
            FAULT_TIMEOUT_S,
            "a tracker checkpoint of every camera",
        )
        for topic in POISONED:
            seen.setdefault("poison", {})[topic.name] = faults.poison(bootstrap, topic, cams[0])
        victim = max(replicas, key=lambda r: len(opened(r)))
        survivor = next(r for r in replicas if r != victim)
        seen.update(victim=victim, survivor=survivor, victim_cameras=opened(victim))
        seen["victim_pid"] = faults.kill_for_good(sup, victim)
        seen["killed_at_ns"] = time.time_ns()
        seen["published_at_kill"] = {c: faults.frames_published(redis_url, c) for c in cams}

        def restored() -> bool:
            events = faults.log_events(logs / f"{survivor}.log", "camera_tracker_opened")
            got = {e["camera"] for e in events if e.get("outcome") == "restored"}
            return seen["victim_cameras"] <= got

        seen["takeover_s"] = round(
            faults.wait_for(restored, FAULT_TIMEOUT_S, f"{survivor} restores the cameras"), 1
        )

    return Fault(script)


def test_tracker_replica_killed_and_poison(stack: StackConfig, tmp_path: Path) -> None:
    bootstrap, redis_url = stack_mod.kafka_bootstrap(stack), stack_mod.redis_url(stack)
    fault = _kill_tracker_and_poison(tmp_path, bootstrap, redis_url)
    t0 = time.monotonic()
    s = run_live(live_run(tmp_path, fault, replicas={"tracker": 2})).summary
    seen = fault.check()
    topics = faults.Topics.read(bootstrap)
    replayed = len(topics.tracklets) - len({t.tracklet_id for t in topics.tracklets})
    print(
        summary_line(
            s,
            fault=seen,
            tracklet_copies_replayed=replayed,
            dead_letter_copies=len(topics.dead_letters),
            test_seconds=round(time.monotonic() - t0, 1),
        )
    )
    assert s["completed"], s
    assert seen["victim_cameras"], "the killed replica owned no camera: nothing was tested"
    # the supervisor restarted nothing: the survivor recovered on its own
    assert all(n == 0 for n in s["restarts"].values()), s["restarts"]
    faults.check_accounting(s, topics)  # the detector was not touched: no repeat allowed
    latest = faults.check_tracklets_and_identities(topics, tmp_path / "reid")
    tracked = faults.check_detections_tracked(topics, MIN_DETECTIONS_TRACKED_WITH_FAULT)
    print(json.dumps({"detections_tracked": tracked}))
    assert seen["takeover_s"] <= MAX_TAKEOVER_S, seen

    # every camera of the killed replica has tracked frames after the kill
    for cam in seen["victim_cameras"]:
        after = seen["published_at_kill"][cam]
        tracked = {q for t in latest if t.camera_id == cam for q in t.frame_seqs}
        assert any(q > after for q in tracked), f"{cam}: no tracklet covers frames after the kill"

    # poison: every one dead-lettered by the stage that reads the topic, with a reason
    # and the original bytes. Dead letters are at-least-once too: a replica killed
    # after producing one but before committing has it produced again by the survivor.
    dead = {(d.topic, d.partition, d.offset): d for d in topics.dead_letters}
    assert len(dead) == sum(len(v) for v in seen["poison"].values()), [
        (d.stage, d.topic, d.reason) for d in topics.dead_letters
    ]
    for topic in POISONED:
        mine = [d for (t, _, _), d in dead.items() if t == topic.name]
        assert len(mine) == 2, (topic.name, mine)
        assert {d.stage for d in mine} == {DEAD_LETTERING_STAGE[topic.name]}
        reasons = sorted(d.reason for d in mine)
        assert any("schema version" in r for r in reasons), reasons
        assert any("invalid" in r for r in reasons), reasons
        assert all(d.value for d in mine), "a dead letter must keep the original bytes"

    check_accuracy(s, latest)


# ---------------------------------------------------------------------------
# private stack: broker outage, Redis restart, cameras
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_stack(stack_config: StackConfig) -> Iterator[StackConfig]:
    """A stack of this module alone (fresh ports, own state dir), made the default
    for everything the run starts by pointing the CROSSCAM_* variables at it.

    Depends on ``stack_config`` so the session's config is read from the real
    environment before this one is patched in.
    """
    with server_state_dir("faults") as state, pytest.MonkeyPatch.context() as mp:
        cfg = private_stack_config(state)
        for name, value in {
            "CROSSCAM_STACK_DIR": cfg.state_dir,
            "CROSSCAM_KAFKA_PORT": cfg.kafka_port,
            "CROSSCAM_KAFKA_CONTROLLER_PORT": cfg.kafka_controller_port,
            "CROSSCAM_REDIS_PORT": cfg.redis_port,
            "CROSSCAM_RTSP_PORT": cfg.rtsp_port,
            "CROSSCAM_PROMETHEUS_PORT": cfg.prometheus_port,
            "CROSSCAM_KAFKA_LIBS": cfg.kafka_libs_dir,
        }.items():
            mp.setenv(name, str(value))
        for name in ("CROSSCAM_KAFKA_BOOTSTRAP", "CROSSCAM_REDIS_URL"):
            mp.delenv(name, raising=False)
        assert StackConfig.from_env() == cfg
        try:
            stack_mod.up(cfg=cfg)
            yield cfg
        finally:
            stack_mod.down(cfg)


def _kafka_outage(redis_url: str, cfg: StackConfig) -> Fault:
    def script(sup: Supervisor, seen: dict[str, Any]) -> None:
        cams = [
            n.removeprefix("ingest-")
            for n in sup.children
            if n.startswith("ingest-") and n != f"ingest-{OFFLINE_CAMERA}"
        ]
        faults.wait_for(
            lambda: all(faults.frames_published(redis_url, c) >= FAULT_AT_FRAMES for c in cams),
            FAULT_TIMEOUT_S,
            f"{FAULT_AT_FRAMES} frames of every camera published",
        )
        seen["offline_status"] = faults.camera_status(redis_url, [OFFLINE_CAMERA])[OFFLINE_CAMERA]
        stack_mod.kafka_stop(cfg)
        seen["published_at_stop"] = {c: faults.frames_published(redis_url, c) for c in cams}
        time.sleep(KAFKA_OUTAGE_S)  # the fault itself: the broker stays down this long
        seen["published_during_outage"] = {
            c: faults.frames_published(redis_url, c) - seen["published_at_stop"][c] for c in cams
        }
        stack_mod.kafka_start(cfg)
        seen["restarted_at_ns"] = time.time_ns()
        at_start = {c: faults.frames_published(redis_url, c) for c in cams}
        seen["frames_flow_again_s"] = round(
            faults.wait_for(
                lambda: all(faults.frames_published(redis_url, c) > at_start[c] for c in cams),
                FAULT_TIMEOUT_S,
                "ingest publishes again after the broker is back",
            ),
            1,
        )

    return Fault(script)


def test_kafka_outage_and_camera_never_connects(
    private_stack: StackConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSCAM_INGEST__PUBLISH_QUEUE_FRAMES", str(OUTBOX_FRAMES))
    bootstrap = stack_mod.kafka_bootstrap(private_stack)
    redis_url = stack_mod.redis_url(private_stack)
    fault = _kafka_outage(redis_url, private_stack)
    t0 = time.monotonic()
    result = run_live(
        live_run(
            tmp_path,
            fault,
            cameras=OUTAGE_RUN_CAMERAS,
            frames=OUTAGE_RUN_FRAMES,
            offline_cameras=(OFFLINE_CAMERA,),
        )
    )
    s = result.summary
    seen = fault.check()
    topics = faults.Topics.read(bootstrap)
    print(summary_line(s, fault=seen, test_seconds=round(time.monotonic() - t0, 1)))
    assert s["completed"], s
    assert all(n == 0 for n in s["restarts"].values()), s["restarts"]
    faults.check_accounting(s, topics, redeliveries=OUTAGE_REDELIVERIES)
    assert seen["frames_flow_again_s"] <= MAX_FRAMES_FLOW_AGAIN_S, seen
    # the outbox held the outage: nothing dropped for want of room, every seq on the topic.
    # (A live camera may still drop a frame "behind", replaced before the encoder took it
    # on a loaded machine; seen once in CI, 1 of 696: that is capture, not the outage.)
    assert all(int(v or 0) == 0 for v in s["accounting"]["ingest_dropped_backlog"].values()), s[
        "accounting"
    ]
    assert sum(int(v or 0) for v in s["accounting"]["ingest_dropped"].values()) <= 0.01 * sum(
        s["accounting"]["frames_on_topic_per_camera"].values()
    ), s["accounting"]
    for cam in s["cameras"]:
        seqs = sorted({d.seq for d in topics.detections if d.camera_id == cam and not d.eos})
        assert seqs == list(range(len(seqs))), f"{cam}: frames missing between seq 0 and {seqs[-1]}"
    latest = faults.check_tracklets_and_identities(topics, tmp_path / "reid")
    merged = faults.merged_link_precision(s, latest)
    tracked = faults.detections_tracked(topics)
    print(json.dumps({"detections_tracked": tracked, "link_precision_if_all_merged": merged}))
    faults.check_detections_tracked(topics, MIN_DETECTIONS_TRACKED_WITH_FAULT)
    acc = s["accuracy_vs_ground_truth"]
    assert acc["link_precision"] >= merged + MIN_PRECISION_OVER_MERGED, (merged, acc)
    assert not topics.dead_letters, [(d.stage, d.reason) for d in topics.dead_letters]
    # the broker was back while the cameras still played: live frames flowed again
    for cam in s["cameras"]:
        last_capture = max(d.ts_capture_ns for d in topics.detections if d.camera_id == cam)
        assert last_capture > seen["restarted_at_ns"], f"{cam} ended before the broker was back"

    # the camera with no mount: never online, nothing published, the reason kept
    off = seen["offline_status"]
    assert off.get("state") in ("connecting", "offline"), off
    assert int(off.get("frames_published", 0)) == 0, off
    assert off.get("last_error"), off
    # (its ingest ends the stream on SIGTERM, so an eos may pass: no frame though)
    assert not any(d.camera_id == OFFLINE_CAMERA and not d.eos for d in topics.detections)


def _redis_restart_and_camera_drop(bootstrap: str, redis_url: str, cfg: StackConfig) -> Fault:
    def script(sup: Supervisor, seen: dict[str, Any]) -> None:
        cams = [n.removeprefix("ingest-") for n in sup.children if n.startswith("ingest-")]
        faults.wait_for(
            lambda: all(faults.frames_published(redis_url, c) >= FAULT_AT_FRAMES for c in cams),
            FAULT_TIMEOUT_S,
            f"{FAULT_AT_FRAMES} frames of every camera published",
        )
        faults.wait_for(
            lambda: all(faults.checkpoint_written(redis_url, c) for c in cams),
            FAULT_TIMEOUT_S,
            "a tracker checkpoint of every camera",
        )
        # ... and ReID has given out global ids (its counter lives in Redis too)
        faults.wait_for(
            lambda: faults.count_matches(bootstrap, "new_identity") >= 1,
            FAULT_TIMEOUT_S,
            "a first identity on the matches topic",
        )
        seen["run_id_before"] = faults.redis_run_id(redis_url)
        stack_mod.redis_stop(cfg)
        seen["redis_start_retries"] = 0
        while True:
            try:
                stack_mod.redis_start(cfg)
                break
            except stack_mod.StackError as exc:
                # The stack's own restart has been seen to fail once in a while (the new
                # server exits before logging); that is the stack's flakiness, not the
                # pipeline's, so it gets one more try and the count is reported.
                seen["redis_start_retries"] += 1
                seen["redis_start_error"] = str(exc)[:300]
                if seen["redis_start_retries"] > 1:
                    raise
        # a fresh server (no persistence): whatever checkpoint exists from now on was
        # written after the restart
        seen["run_id_after"] = faults.redis_run_id(redis_url)
        seen["checkpoints_again_s"] = round(
            faults.wait_for(
                lambda: all(faults.checkpoint_written(redis_url, c) for c in cams),
                FAULT_TIMEOUT_S,
                "every camera's tracker checkpoint written again after the restart",
            ),
            1,
        )
        seen["status_again_s"] = round(
            faults.wait_for(
                lambda: all(faults.frames_published(redis_url, c) > 0 for c in cams),
                FAULT_TIMEOUT_S,
                "every camera's status written again",
            ),
            1,
        )
        # camera drop: unpublish, ingest notices, it stays down, then comes back
        cam = cams[1]
        seen["dropped_camera"] = cam
        path = stack_mod.stack_rtsp(cfg).mounts()[cam]["path"]
        stack_mod.rtsp_unpublish(cam, cfg)
        seen["published_at_drop"] = faults.frames_published(redis_url, cam)

        def state() -> dict[str, str]:
            return faults.camera_status(redis_url, [cam])[cam]

        faults.wait_for(
            lambda: state().get("state") in ("offline", "connecting"),
            FAULT_TIMEOUT_S,
            f"ingest notices {cam} is gone",
        )
        seen["status_while_down"] = state()
        # the fault itself: the camera stays away a while after ingest noticed
        time.sleep(CAMERA_DOWN_MIN_S)
        stack_mod.rtsp_publish(cam, path, loop=False, cfg=cfg)  # plays again from the start
        seen["back_online_s"] = round(
            faults.wait_for(
                lambda: (
                    state().get("state") == "online"
                    and int(state().get("frames_published", 0)) > seen["published_at_drop"]
                ),
                FAULT_TIMEOUT_S,
                f"{cam} online and publishing again",
            ),
            1,
        )
        seen["status_after"] = state()

    return Fault(script)


def test_redis_restart_and_camera_drop(private_stack: StackConfig, tmp_path: Path) -> None:
    bootstrap = stack_mod.kafka_bootstrap(private_stack)
    redis_url = stack_mod.redis_url(private_stack)
    fault = _redis_restart_and_camera_drop(bootstrap, redis_url, private_stack)
    t0 = time.monotonic()
    s = run_live(live_run(tmp_path, fault)).summary
    seen = fault.check()
    topics = faults.Topics.read(bootstrap)
    print(summary_line(s, fault=seen, test_seconds=round(time.monotonic() - t0, 1)))
    assert s["completed"], s
    assert all(n == 0 for n in s["restarts"].values()), s["restarts"]
    # a real restart (a new server: no persistence, every key gone) ...
    assert seen["run_id_before"] != seen["run_id_after"], seen
    assert seen["checkpoints_again_s"] <= MAX_CHECKPOINTS_AGAIN_S, seen
    assert seen["status_again_s"] <= MAX_STATUS_AGAIN_S, seen
    faults.check_accounting(s, topics)  # Redis is no Kafka fault: no detection repeated
    latest = faults.check_tracklets_and_identities(topics, tmp_path / "reid")
    merged = faults.merged_link_precision(s, latest)
    tracked = faults.detections_tracked(topics)
    print(json.dumps({"detections_tracked": tracked, "link_precision_if_all_merged": merged}))
    faults.check_detections_tracked(topics, MIN_DETECTIONS_TRACKED_WITH_FAULT)
    acc = s["accuracy_vs_ground_truth"]
    assert acc["link_precision"] >= merged + MIN_PRECISION_OVER_MERGED, (merged, acc)
    assert not topics.dead_letters, [(d.stage, d.reason) for d in topics.dead_letters]
    # ... and the dropped camera reconnected and its later frames were tracked
    cam = seen["dropped_camera"]
    assert int(seen["status_after"]["reconnects"]) >= 1, seen["status_after"]
    tracked = {
        q
        for t in pipeline.latest_tracklets(topics.tracklets)
        if t.camera_id == cam
        for q in t.frame_seqs
    }
    assert any(q > seen["published_at_drop"] for q in tracked), (
        f"{cam}: nothing tracked after the drop"
    )
