"""``crosscam demo`` — the main job: the whole pipeline on a multi-camera replay.

1. starts the local stack (Kafka, Redis, the RTSP server, Prometheus);
2. builds the PETS09 multi-camera scenario (3 non-overlapping views with
   their own looks, ground truth and a cameras file) unless already built;
3. serves each view as a live RTSP camera and runs every stage supervised
   (``crosscam run``): ingest per camera → detector → tracker → ReID;
4. prints cross-camera matches as they happen (read from the public
   ``crosscam.matches.v1`` topic, like any Kafka client would);
5. after one pass of the recording, ends the cameras' streams, waits for the
   pipeline to drain, and prints a summary: identities, links and their
   accuracy against the ground truth, message accounting, where results are
   kept and the metrics endpoints;
6. leaves the ReID API and the web gallery running to browse (until Ctrl-C;
   ``--no-serve`` or a non-interactive run stops there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from common.units import NS_PER_S
from crosscam.run import build_specs
from crosscam.supervisor import Supervisor
from devstack import stack
from evaluation import live_scoring as pipeline
from reid.topology import Topology
from schemas.cameras import Camera, CamerasFile, dump_cameras_toml
from schemas.codec import DecodeError, decode
from schemas.messages import DeadLetter, Detections, Frame, Match, Tracklet
from schemas.topics import DEADLETTER, DETECTIONS, FRAMES, MATCHES, TOPICS, TRACKLETS
from service.kafka import ensure_topics
from service.logs import setup_logging
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

CAMERAS_WAIT_S = 60.0
"""How long ingest processes get to start and report to Redis before the cameras play."""

INGEST_SETTLE_S = 2.0
"""After the recordings end, ingest still holds a few frames (outbox, in flight)."""

DRAIN_STABLE_S = 5.0
"""The pipeline counts as drained when every stage's lag is 0 and nothing new
appeared on the tracklets/matches topics for this long."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="where results are kept"
    )
    parser.add_argument("--cameras", type=int, default=3, help="views cut from PETS09-S2L1")
    parser.add_argument(
        "--frames", type=int, default=None, help="use only the first N frames (default all 795)"
    )
    parser.add_argument("--gallery-port", type=int, default=8080)
    parser.add_argument("--metrics-base-port", type=int, default=19400)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up after this long")
    parser.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave Kafka, Redis, the RTSP server and Prometheus running afterwards",
    )
    parser.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the gallery up after the summary (default: when interactive)",
    )


def _scenario(out: Path, cameras: int, frames: int | None) -> Path:
    from evaluation.scenario import build_scenario

    scn = out / "scenario"
    meta_path = scn / "scenario.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if len(meta.get("views", [])) == cameras and meta.get("frames") == (
            frames or meta.get("source_frames", meta.get("frames"))
        ):
            return scn
        shutil.rmtree(scn)
    print(f"building the {cameras}-camera PETS09 scenario in {scn} ...", flush=True)
    build_scenario(scn, cameras=cameras, max_frames=frames)
    return scn


def _live_cameras_file(
    scn: Path, out: Path, offline_cameras: tuple[str, ...] = ()
) -> tuple[Path, dict[str, str]]:
    """A cameras file whose sources are the views' RTSP URLs (published later), plus
    ``offline_cameras``: URLs on the same server that never get a mount."""
    topo = Topology.load(scn / "cameras.toml")
    urls = {cam.id: stack.rtsp_url(cam.id) for cam in topo.spec.cameras}
    cams = [cam.model_copy(update={"source": urls[cam.id]}) for cam in topo.spec.cameras]
    for cam_id in offline_cameras:
        urls[cam_id] = stack.rtsp_url(cam_id)
        cams.append(Camera(id=cam_id, name=f"{cam_id} (never connects)", source=urls[cam_id]))
    spec = CamerasFile(window_s=topo.spec.window_s, cameras=cams, links=list(topo.spec.links))
    path = out / "cameras.live.toml"
    path.write_text(dump_cameras_toml(spec))
    return path, urls


def _publish_once(scn: Path) -> None:
    """Start every view as a live camera, at the same moment, playing the recording once."""
    topo = Topology.load(scn / "cameras.toml")
    # One after the other, each camera started about a second after the one before
    # (each publish waited for its camera to answer), so the views of one recording
    # reached the linker up to 2 s apart, by a stagger that varied by 0.5 s per run.
    stack.rtsp_publish_together(
        {cam.id: topo.source_path(cam.id) for cam in topo.spec.cameras},
        loop=False,
        pre_encode=True,
    )


def _cameras_ended(cams: list[str]) -> bool:
    mounts = stack.stack_rtsp().mounts()
    return all(mounts.get(c, {}).get("state") == "ended" for c in cams)


async def _follow_matches(
    bootstrap: str, stop: asyncio.Event, sink: list[Match], on_match: Callable[[Match], None] | None
) -> None:
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), list(TOPICS), stop=stop)
    consumer = AIOKafkaConsumer(
        MATCHES.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                for rec in msgs:
                    m = decode(Match, rec.value)
                    sink.append(m)
                    if on_match is not None:
                        on_match(m)
    finally:
        await consumer.stop()


def _describe(m: Match) -> str:
    span = f"{(m.ts_end_ns - m.ts_start_ns) / NS_PER_S:.1f}s" if m.ts_end_ns else ""
    if m.kind == "link":
        near = ", ".join(
            f"{x.camera_id}:{x.tracklet_id.split(':')[1]} d={x.distance:.2f}" for x in m.matched[:3]
        )
        return f"LINK   {m.global_id}  {m.camera_id} track {m.tracklet_id.split(':')[1]} ({span})  ~ {near}"
    if m.kind == "merge":
        return f"MERGE  {m.global_id}  <= {', '.join(m.merged_ids)}"
    if m.kind == "split":
        return f"SPLIT  {m.global_id}  {m.tracklet_id} out of {', '.join(m.merged_ids)}"
    return f"NEW    {m.global_id}  {m.camera_id} track {m.tracklet_id.split(':')[1] if m.tracklet_id else ''} ({span})"


def _camera_status(redis_url: str, cameras: list[str]) -> dict[str, dict[str, str]]:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {
            c: {str(k): str(v) for k, v in client.hgetall(f"crosscam:camera:{c}").items()}
            for c in cameras
        }
    finally:
        client.close()


def _wait(predicate: Any, timeout_s: float, period_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return False


@dataclass
class LiveRun:
    """One live run of the whole pipeline over a scenario (demo, e2e tests, bench)."""

    out: Path
    cameras: int = 3
    frames: int | None = None
    gallery_port: int = 8080
    reid_api_port: int = 8700
    metrics_base_port: int = 19400
    timeout_s: float = 900.0
    replicas: dict[str, int] = field(default_factory=dict)
    on_match: Callable[[Match], None] | None = None
    during: Callable[[Supervisor], None] | None = None
    """Called in a thread once every stage is started (fault tests act here)."""
    keep_serving: bool = False
    offline_cameras: tuple[str, ...] = ()
    """Extra cameras in the cameras file whose RTSP URL has no mount (they never
    connect): ingest runs for them, the run neither waits for nor scores them."""


@dataclass
class LiveResult:
    """A finished live run; with ``keep_serving`` its ReID API and gallery still run."""

    summary: dict[str, Any]
    supervisor: Supervisor
    stop_event: threading.Event
    thread: threading.Thread

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(120)


def _prepare_live(
    run: LiveRun, out: Path, bootstrap: str, redis_url: str
) -> tuple[Path, int, Path, dict[str, str]]:
    """The scenario, a clean bus and store, no camera published yet, the live cameras
    file and the environment the children inherit. Returns ``(scenario folder, its
    frame count, cameras file, RTSP URL per camera)``."""
    scn = _scenario(out, run.cameras, run.frames)
    meta = json.loads((scn / "scenario.json").read_text())
    n_frames = int(meta["frames"])
    asyncio.run(pipeline.reset_state(bootstrap, redis_url))
    shutil.rmtree(out / "reid", ignore_errors=True)
    shutil.rmtree(out / "logs", ignore_errors=True)
    for cam in [*Topology.load(scn / "cameras.toml").cameras, *run.offline_cameras]:
        stack.rtsp_unpublish(cam)
    cameras_file, urls = _live_cameras_file(scn, out, run.offline_cameras)
    # Ingest retries quickly until the cameras appear, so it joins each stream
    # at its first frames (the recording is played once: no loop, no wrap).
    os.environ.setdefault("CROSSCAM_INGEST__BACKOFF_INITIAL_S", "0.2")
    os.environ.setdefault("CROSSCAM_INGEST__BACKOFF_MAX_S", "1.0")
    # Every stage registers its /metrics with the local Prometheus (file discovery);
    # endpoints of earlier runs are forgotten.
    targets = stack.prometheus_targets_dir()
    for old in targets.glob("*.json"):
        old.unlink(missing_ok=True)
    os.environ.setdefault("CROSSCAM_METRICS_TARGETS_DIR", str(targets))
    return scn, n_frames, cameras_file, urls


def _wait_drained(bootstrap: str, deadline: float) -> bool:
    """Wait (until ``deadline``, monotonic) for every stage's lag to stay 0 for
    ``DRAIN_STABLE_S``; False if it did not."""
    groups = {"detector": FRAMES.name, "tracker": DETECTIONS.name, "reid": TRACKLETS.name}
    stable_since: list[float] = []

    def drained_and_stable() -> bool:
        lags = [
            asyncio.run(pipeline.group_lag(bootstrap, f"crosscam-{g}", t))
            for g, t in groups.items()
        ]
        if not all(lag == 0 for lag in lags):
            stable_since.clear()
            return False
        stable_since.append(time.monotonic())
        return stable_since[-1] - stable_since[0] >= DRAIN_STABLE_S

    return _wait(drained_and_stable, max(1.0, deadline - time.monotonic()))


def run_live(run: LiveRun) -> LiveResult:
    """Stack up, scenario as live RTSP cameras, every stage supervised, one pass, drain, summary.

    Unless ``keep_serving``, every child has been stopped on return; with it,
    the ReID API and gallery are still up until :meth:`LiveResult.stop`.
    """
    out = run.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    stack.up(prometheus=True)
    bootstrap, redis_url = stack.kafka_bootstrap(), stack.redis_url()
    scn, n_frames, cameras_file, urls = _prepare_live(run, out, bootstrap, redis_url)
    specs = build_specs(
        cameras_file,
        replicas=run.replicas,
        data_dir=out / "reid",
        metrics_base_port=run.metrics_base_port,
        gallery_port=run.gallery_port,
        reid_api_port=run.reid_api_port,
    )
    sup = Supervisor(specs, log_dir=out / "logs")
    stop_sup = threading.Event()
    sup_thread = threading.Thread(target=sup.run, args=(stop_sup,), daemon=True)
    sup_thread.start()
    matches: list[Match] = []
    stop_printer = asyncio.Event()
    loop = asyncio.new_event_loop()
    printer = threading.Thread(
        target=loop.run_until_complete,
        args=(_follow_matches(bootstrap, stop_printer, matches, run.on_match),),
        daemon=True,
    )
    printer.start()
    during: threading.Thread | None = None
    if run.during is not None:
        during = threading.Thread(target=run.during, args=(sup,), daemon=True)
        during.start()

    ingest = [s.name for s in specs if s.name.startswith("ingest-")]
    cams = [
        cam for cam in (n.removeprefix("ingest-") for n in ingest) if cam not in run.offline_cameras
    ]
    deadline = time.monotonic() + run.timeout_s
    _wait(lambda: all(_camera_status(redis_url, cams).values()), CAMERAS_WAIT_S, 0.2)
    _publish_once(scn)
    log.info("cameras_published", extra={"urls": json.dumps(urls), "frames": n_frames})

    def one_pass_done() -> bool:
        # a fault script is part of the run: a camera it took down and brought back may
        # end its pass before the script has seen it recover
        if (during is not None and during.is_alive()) or not _cameras_ended(cams):
            return False
        time.sleep(INGEST_SETTLE_S)  # the last frames reach Kafka
        return True

    passed = _wait(one_pass_done, max(1.0, deadline - time.monotonic()))
    # Snapshot now: the status hashes expire (TTL) once ingest has stopped.
    camera_status = _camera_status(redis_url, cams)
    # SIGTERM: each camera ends its stream (eos) and the tracker closes its tracks.
    sup.stop(ingest)
    drained = _wait_drained(bootstrap, deadline)
    stop_printer.set()
    printer.join(5)
    summary = _summarise(
        bootstrap,
        camera_status,
        scn,
        out,
        cams,
        specs,
        passed and drained,
        time.monotonic() - t_start,
    )
    summary["restarts"] = sup.restarts()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    result = LiveResult(summary, sup, stop_sup, sup_thread)
    if not run.keep_serving:
        result.stop()
    return result


def main(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    # The match follower starts while topics are (re)created: aiokafka's transient
    # leader errors are noise to a person watching the demo.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    serve = args.serve if args.serve is not None else sys.stdin.isatty()
    print("crosscam demo: stack up, scenario, live cameras, every stage ...", flush=True)
    run = LiveRun(
        out=args.out,
        cameras=args.cameras,
        frames=args.frames,
        gallery_port=args.gallery_port,
        metrics_base_port=args.metrics_base_port,
        timeout_s=args.timeout_s,
        on_match=lambda m: print("match " + _describe(m), flush=True),
        keep_serving=serve,
    )
    result = run_live(run)
    summary = result.summary
    _print_summary(summary)
    if not serve:
        _print_sign_in(args.gallery_port, link=False)
    if serve:
        print(f"\ngallery: http://127.0.0.1:{args.gallery_port}/  (Ctrl-C to stop)", flush=True)
        _print_sign_in(args.gallery_port, link=True)
        try:
            while result.thread.is_alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        result.stop()
    if not args.keep_stack:
        stack.down()
    return 0 if summary["completed"] else 1


def frame_accounting(
    frame_records: list[Any], dets: list[Detections], dls: list[DeadLetter]
) -> dict[str, Any]:
    """Every record on the frames topic is accounted for: its frame was detected, or the
    record itself was dead-lettered (undecodable, wrong version, rejected by the detector).

    Records are matched to dead letters by (partition, offset), so poison that is no
    frame at all counts too; a frame repeated by a producer retry (at-least-once) is
    counted under ``frame_records_repeated``, not as unaccounted.
    """
    dead = {(d.partition, d.offset) for d in dls if d.topic == FRAMES.name}
    detected_keys = {(d.camera_id, d.seq) for d in dets}
    keys: set[tuple[str, int]] = set()
    per_camera: dict[str, int] = {}
    repeated = detected = dead_lettered = unaccounted = 0
    for rec in frame_records:
        if (rec.partition, rec.offset) in dead:
            dead_lettered += 1
            continue
        try:
            f = decode(Frame, rec.value)
        except DecodeError:
            unaccounted += 1
            continue
        key = (f.camera_id, f.seq)
        if key in keys:
            repeated += 1
            continue
        keys.add(key)
        if not f.eos:
            per_camera[f.camera_id] = per_camera.get(f.camera_id, 0) + 1
        if key in detected_keys:
            detected += 1
        else:
            unaccounted += 1
    return {
        "frame_records": len(frame_records),
        "frames_published": len(keys),
        "frames_detected": detected,
        "frames_dead_lettered": dead_lettered,
        "frame_records_repeated": repeated,
        "frames_unaccounted": unaccounted,
        "frames_on_topic_per_camera": per_camera,
        "duplicate_detections": len(dets) - len(detected_keys),
    }


def _summarise(
    bootstrap: str,
    status: dict[str, dict[str, str]],
    scn: Path,
    out: Path,
    cams: list[str],
    specs: list,
    completed: bool,
    elapsed: float,
) -> dict[str, Any]:
    frame_records = asyncio.run(pipeline.read_topic(bootstrap, FRAMES.name))
    frames = pipeline.decode_all(frame_records, Frame)
    dets = pipeline.decode_all(
        asyncio.run(pipeline.read_topic(bootstrap, DETECTIONS.name)), Detections
    )
    dls = pipeline.decode_all(
        asyncio.run(pipeline.read_topic(bootstrap, DEADLETTER.name)), DeadLetter
    )
    tracklets = pipeline.latest_tracklets(
        pipeline.decode_all(asyncio.run(pipeline.read_topic(bootstrap, TRACKLETS.name)), Tracklet)
    )
    matches = pipeline.decode_all(asyncio.run(pipeline.read_topic(bootstrap, MATCHES.name)), Match)
    predicted = pipeline.identities_from_matches(matches)
    accuracy = pipeline.score_live(scn, tracklets, predicted, frames)
    kinds: dict[str, int] = {}
    for m in matches:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    cams_of: dict[str, set[str]] = {}
    for tid, gid in predicted.items():
        cams_of.setdefault(gid, set()).add(tid.split(":")[0])
    cross = {g for g, cs in cams_of.items() if len(cs) > 1}
    accounting = frame_accounting(frame_records, dets, dls)
    accounting["ingest_dropped"] = {c: status[c].get("frames_dropped") for c in cams}
    accounting["ingest_dropped_backlog"] = {
        c: status[c].get("frames_dropped_backlog") for c in cams
    }
    return {
        "completed": completed,
        "seconds": round(elapsed, 1),
        "cameras": {
            c: {
                k: status[c].get(k)
                for k in ("state", "frames_published", "reconnects", "fps_measured")
            }
            for c in cams
        },
        "messages": {
            "frames": sum(1 for f in frames if not f.eos),
            "detections": len(dets),
            "dead_letters": len(dls),
            "tracklets": len(tracklets),
            "match_events": kinds,
        },
        "accounting": accounting,
        "identities": len(set(predicted.values())),
        "identities_seen_on_several_cameras": len(cross),
        "accuracy_vs_ground_truth": accuracy,
        "results": {
            "summary": str(out / "summary.json"),
            "reid_store_and_thumbnails": str(out / "reid"),
            "logs": str(out / "logs"),
            "scenario": str(scn),
        },
        "metrics_endpoints": {s.name: f"http://127.0.0.1:{s.metrics_port}/metrics" for s in specs},
        "prometheus": stack.prometheus_url(),
    }


def _print_sign_in(gallery_port: int, link: bool) -> None:
    """Where the admin token is; with ``link`` on a terminal, a link that signs the gallery in."""
    from service.auth import default_token_file

    path = default_token_file()
    if not path.is_file():
        print(f"admin token: not found at {path} (create one: crosscam tokens create "
              "--role admin --name you)", flush=True)  # fmt: skip
        return
    print(
        f"admin token: in {path} (readable by you only); paste it on the sign-in page", flush=True
    )
    if link and sys.stdout.isatty():  # never into a captured log
        token = path.read_text().strip()
        print(f"or open: http://127.0.0.1:{gallery_port}/#token={token}", flush=True)


def _print_summary(s: dict[str, Any]) -> None:
    acc = s["accuracy_vs_ground_truth"]
    print("\n==== crosscam demo summary ====")
    print(
        f"identities: {s['identities']} ({s['identities_seen_on_several_cameras']} seen on several cameras); "
        f"tracklets: {s['messages']['tracklets']}; match events: {s['messages']['match_events']}"
    )
    print(
        f"cross-camera links vs ground truth: precision {acc['link_precision']:.3f}  recall {acc['link_recall']:.3f}  "
        f"F1 {acc['link_f1']:.3f}  |  cross-camera IDF1 {acc['idf1']:.3f}"
    )
    print(
        f"messages: {s['messages']['frames']} frames, {s['messages']['detections']} detections, "
        f"{s['messages']['dead_letters']} dead letters"
    )
    print(json.dumps(s, indent=2))
