"""``crosscam bench pipeline``: does the whole pipeline keep up with N cameras at F fps?

Serves the PETS09-S2L1 recording (768×576) as N live RTSP cameras at F fps
on the local stack's RTSP server (pre-encoded once to H.264 and served as is,
as a camera's own encoder would: no x264 per camera competes for the cores;
``--live-encode`` restores the old per-camera encoding), runs every stage supervised (ingest per
camera → detector → tracker → ReID, as ``crosscam run`` does; no gallery),
lets it warm up, then measures for S seconds:

* **kept up** — consumer lag of each stage's group, sampled every second:
  max over the window and at its end. The run kept up when, at the end, the
  detector and tracker are less than ``MAX_LAG_S`` seconds of frames behind
  and the detector consumed at least ``MIN_THROUGHPUT_RATIO`` of what ingest
  published in the window;
* **latency** — capture → detections / tracklet / match, p50 and p99: the
  Kafka record timestamp (set by the producer at send time) minus the
  message's capture time (``ts_capture_ns``; for a tracklet and a match, the
  capture time of the tracklet's last frame, so it includes the tracker's
  wait before it declares a track finished);
* **Kafka bytes per second per camera** — record keys + values on each topic;
* **CPU seconds per frame per stage** — utime + stime from ``/proc/<pid>/stat``
  of every supervised child, over the window, divided by the frames the
  window carried (ingest: published; the others: consumed, by their group's
  committed offsets);
* **camera-frames per second per core** — frames the detector consumed per
  second of the window, divided by the cores the pipeline's processes kept
  busy (their CPU seconds / window seconds): the capacity figure that moves
  with the code, not with the machine's size;
* **load average** at the start and the end of the window: on a shared
  machine the other processes' load changes what keeps up.

A stack this command started (``--stack``, the default) is stopped at the end.

Prints one JSON object (``--json``) or a short table. The stack is started
(and its crosscam topics and keys reset) like the demo's; run it on your own
stack (``CROSSCAM_*_PORT``, ``CROSSCAM_STACK_DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common.units import NS_PER_S
from crosscam.run import build_specs
from crosscam.supervisor import Supervisor
from devstack import faults, stack
from evaluation import live_scoring as pipeline
from schemas.cameras import Camera, CamerasFile, dump_cameras_toml
from schemas.codec import DecodeError, decode
from schemas.messages import Detections, Frame, Match, Tracklet
from schemas.topics import DETECTIONS, FRAMES, MATCHES, TRACKLETS
from service.assets import pets_dir
from service.logs import setup_logging

log = logging.getLogger(__name__)

GROUPS = {"detector": FRAMES.name, "tracker": DETECTIONS.name, "reid": TRACKLETS.name}
"""Each consuming stage's group suffix and input topic (groups are ``crosscam-<stage>``)."""
MAX_LAG_S = 2.0
"""Kept up: at the end of the window, a stage is at most this many seconds of frames
behind (N × F × MAX_LAG_S messages). One detector batch plus a poll is well under it;
a stage short of capacity grows past it within a 30 s window at a few % deficit."""
MIN_THROUGHPUT_RATIO = 0.95
"""Kept up: the detector consumed at least this share of the frames published in the window."""
WARMUP_TIMEOUT_S = 300.0
"""Longest wait for every camera's first detections (model load, RTSP connect)."""
WARMUP_SETTLE_S = 90.0
"""After the first detections, the window starts once the detector has stayed under
``WARMUP_LAG_S`` behind for ``WARMUP_STEADY_S`` (cameras start only after every stage
consumes, so this is the backlog of the first frames' JPEG/ONNX warm-up, which a
detector with little spare capacity drains slowly: 20 s was too short at 3 cameras
and put the drain's latency into the window), or after this many seconds at the latest."""
WARMUP_STEADY_S = 5.0
"""How long the detector's lag must stay under ``WARMUP_LAG_S`` before the window starts."""
WARMUP_LAG_S = 0.5
"""The start-up backlog counts as drained once the detector is at most this many seconds
of frames behind (a batch or two). The kept-up bound (``MAX_LAG_S``) let a window start
with up to 2 s still queued, which then drained inside the window's first seconds."""
FIRST_DECISIONS = frozenset({"link", "new_identity"})
"""Match events timed from capture: a tracklet's first decision (splits and merges revisit
tracklets that ended long before, up to the linker's revisit window)."""
LATENCY_SLICE_S = 10.0
"""capture→detections p99 is also reported per slice of the window this long (a one-off
stall shows in one slice; a standing queue in all)."""
LAG_SAMPLE_S = 1.0
"""How often the groups' lag is sampled."""
METRICS_PORTS = 64
"""Ports reserved for the children's metrics endpoints (one per process)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cameras", type=int, default=2, help="N cameras (PETS09 replayed N times)"
    )
    parser.add_argument("--fps", type=float, default=10.0, help="F frames per second per camera")
    parser.add_argument("--seconds", type=float, default=30.0, help="S seconds measured")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "--stack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the local stack (as the demo does); --no-stack uses running servers at "
        "the CROSSCAM_* addresses (their crosscam topics are reset either way)",
    )
    parser.add_argument(
        "--live-encode",
        action="store_true",
        help="cameras decode and re-encode the file live per stream (the old test server) "
        "instead of serving a pre-encoded H.264 file",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-pipeline"))
    parser.add_argument("--replicas", default="", help="e.g. detector=2,tracker=1")
    parser.add_argument("--metrics-base-port", type=int, default=0, help="0 = find free ports")


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_s": None, "p99_s": None}
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
    return {"n": len(values), "p50_s": round(statistics.median(values), 3), "p99_s": round(p99, 3)}


async def _committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await pipeline._partitions(consumer, topic)  # noqa: SLF001 - same package
        total = 0
        for tp in tps:
            total += (await consumer.committed(tp)) or 0
        return total
    finally:
        await consumer.stop()


async def _end_total(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await pipeline._partitions(consumer, topic)  # noqa: SLF001
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0
    finally:
        await consumer.stop()


def _snapshot(bootstrap: str, *sups: Supervisor) -> dict[str, Any]:
    """CPU seconds of every child and each group's committed and end offsets, now."""
    cpu = {n: faults.proc_cpu_seconds(pid) for s in sups for n, pid in s.pids().items() if pid}

    async def offsets() -> dict[str, Any]:
        out: dict[str, Any] = {"frames_end": await _end_total(bootstrap, FRAMES.name)}
        for stage, topic in GROUPS.items():
            out[stage] = await _committed_total(bootstrap, f"crosscam-{stage}", topic)
        return out

    detector = {k: v for s in sups for k, v in _detector_seconds(s).items()}
    return {
        "t": time.monotonic(),
        "wall_ns": time.time_ns(),
        "cpu": cpu,
        "detector_seconds": detector,
        **asyncio.run(offsets()),
    }


def _detector_seconds(sup: Supervisor) -> dict[str, float]:
    """Sums of the detector replicas' time histograms, by part and model, from /metrics.

    Wall seconds inside the stage: ``inference:detector`` and ``inference:embedder``
    are ONNX Runtime calls (what a GPU takes over), ``part:decode`` / ``part:crops``
    JPEG decode and crop encoding, ``part:analyze`` the whole analyzer call
    (inference plus pre/post-processing and background masking).
    """
    from urllib.request import urlopen

    out: dict[str, float] = {}
    pattern = re.compile(
        r'^crosscam_detector_(inference|stage)_seconds_(sum|count)\{(?:model|part)="([^"]+)"\} (\S+)$'
    )
    for spec in (c.spec for n, c in sup.children.items() if n.startswith("detector-")):
        try:
            with urlopen(f"http://127.0.0.1:{spec.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            m = pattern.match(line)
            if m:
                key = f"{'inference' if m[1] == 'inference' else 'part'}:{m[3]}:{m[2]}"
                out[key] = out.get(key, 0.0) + float(m[4])
    return out


def _lags(bootstrap: str) -> dict[str, int | None]:
    async def go() -> dict[str, int | None]:
        return {
            s: await pipeline.group_lag(bootstrap, f"crosscam-{s}", t) for s, t in GROUPS.items()
        }

    return asyncio.run(go())


def _cameras_file(out: Path, n: int, fps: float, pre_encode: bool) -> tuple[Path, list[str]]:
    video = pets_dir() / "vtest.avi"
    cams = []
    for i in range(n):
        cam_id = f"bench{i}"
        url = stack.rtsp_publish(cam_id, video, fps=fps, loop=True, pre_encode=pre_encode)
        cams.append(Camera(id=cam_id, name=f"PETS09 replay {i}", source=url))
    path = out / "cameras.bench.toml"
    path.write_text(dump_cameras_toml(CamerasFile(cameras=cams)))
    return path, [c.id for c in cams]


def _latencies_and_bytes(
    bootstrap: str, t0_ns: int, t1_ns: int, cams: list[str], seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Capture → topic latency (messages captured in the window) and bytes/s per camera."""
    lat: dict[str, list[float]] = {"frames": [], "detections": [], "tracklets": [], "matches": []}
    by_slice: dict[int, list[float]] = {}  # capture→detections by LATENCY_SLICE_S of the window
    volume: dict[str, int] = {}
    for topic, typ, name in (
        (FRAMES.name, Frame, "frames"),
        (DETECTIONS.name, Detections, "detections"),
        (TRACKLETS.name, Tracklet, "tracklets"),
        (MATCHES.name, Match, "matches"),
    ):
        total = 0
        for rec in asyncio.run(pipeline.read_topic(bootstrap, topic, timeout_s=120.0)):
            try:
                msg = decode(typ, rec.value)
            except DecodeError:
                continue
            captured = getattr(msg, "ts_capture_ns", 0) or getattr(msg, "ts_end_ns", 0)
            if not t0_ns <= captured <= t1_ns or getattr(msg, "eos", False):
                continue
            total += len(rec.value) + len(rec.key or b"")
            # a split revisits an old tracklet: its delay from capture is not a link's
            if name in lat and (name != "matches" or getattr(msg, "kind", "") in FIRST_DECISIONS):
                lat[name].append(max(0.0, rec.timestamp / 1e3 - captured / NS_PER_S))
                if name == "detections":
                    k = int((captured - t0_ns) / NS_PER_S // LATENCY_SLICE_S)
                    by_slice.setdefault(k, []).append(lat[name][-1])
        volume[name] = total
    per_cam = {
        f"{k}_bytes_per_s_per_camera": round(v / seconds / max(1, len(cams)))
        for k, v in volume.items()
    }
    latency: dict[str, Any] = {f"capture_to_{k}": _percentiles(v) for k, v in lat.items()}
    latency["capture_to_detections_p99_by_slice"] = [
        _percentiles(by_slice[k])["p99_s"] for k in sorted(by_slice)
    ]
    latency["slice_s"] = LATENCY_SLICE_S
    return latency, per_cam


def _parse_replicas(text: str) -> dict[str, int]:
    """``"detector=2,tracker=1"`` -> ``{"detector": 2, "tracker": 1}``."""
    replicas = {}
    for part in filter(None, text.split(",")):
        stage, _, n = part.partition("=")
        replicas[stage] = int(n)
    return replicas


def _cpu_per_stage(
    cpu0: dict[str, float | None],
    cpu1: dict[str, float | None],
    per_frame_base: dict[str, int],
    window: float,
) -> dict[str, Any]:
    """CPU seconds of each stage (replicas and cameras summed) between two snapshots,
    per frame of ``per_frame_base`` and as cores kept busy over ``window`` seconds."""
    by_stage: dict[str, float] = {}
    for name, c1 in cpu1.items():
        c0 = cpu0.get(name)
        if c0 is None or c1 is None:
            continue
        stage = "ingest" if name.startswith("ingest-") else name.rsplit("-", 1)[0]
        by_stage[stage] = by_stage.get(stage, 0.0) + (c1 - c0)
    cpu: dict[str, Any] = {}
    for stage, seconds in by_stage.items():
        n = per_frame_base.get(stage, 0)
        cpu[stage] = {
            "cpu_seconds": round(seconds, 2),
            "cpu_ms_per_frame": round(1000 * seconds / n, 2) if n else None,
            "cores_busy": round(seconds / window, 2),
        }
    return cpu


def _detector_wall_ms(d0: dict[str, float], d1: dict[str, float], n_det: int) -> dict[str, float]:
    """Wall ms per frame of each detector histogram (its ``:sum`` growth over ``n_det`` frames)."""
    return {
        key.removesuffix(":sum"): round(1000 * (d1[key] - d0.get(key, 0.0)) / n_det, 2)
        for key in d1
        if key.endswith(":sum") and n_det
    }


def _warm_up(
    out: Path,
    stage_sup: Supervisor,
    ingest_thread: threading.Thread,
    cams: list[str],
    bootstrap: str,
    redis_url: str,
    drained: float,
) -> None:
    """Wait for every stage to start, then start the cameras, wait for the first
    detections and the first tracklet through ReID, and (at most ``WARMUP_SETTLE_S``)
    for the start-up backlog to clear."""

    def stages_started() -> bool:
        return all(
            faults.log_events(out / "logs" / f"{name}.log", "stage_started")
            for name in stage_sup.children
        )

    faults.wait_for(stages_started, WARMUP_TIMEOUT_S, "every stage started", period_s=1.0)
    ingest_thread.start()

    def first_detections() -> bool:
        return all(faults.frames_published(redis_url, c) > 0 for c in cams) and (
            asyncio.run(_committed_total(bootstrap, "crosscam-detector", FRAMES.name)) > 0
        )

    faults.wait_for(first_detections, WARMUP_TIMEOUT_S, "first detections", period_s=1.0)

    def first_tracklet_linked() -> bool:
        # every stage has done its real work once (ReID's first search, link and upsert)
        return asyncio.run(_committed_total(bootstrap, "crosscam-reid", TRACKLETS.name)) > 0

    faults.wait_for(first_tracklet_linked, WARMUP_TIMEOUT_S, "first tracklet", period_s=1.0)
    under_since: list[float] = []

    def settled() -> bool:
        if (_lags(bootstrap)["detector"] or 0) > drained:
            under_since.clear()
            return False
        if not under_since:
            under_since.append(time.monotonic())
        return time.monotonic() - under_since[0] >= WARMUP_STEADY_S

    try:
        faults.wait_for(settled, WARMUP_SETTLE_S, "start-up backlog cleared", period_s=LAG_SAMPLE_S)
    except faults.FaultTimeout:
        log.warning("backlog_not_cleared_before_window")


def _sample_lags(bootstrap: str, end_at: float) -> list[dict[str, int | None]]:
    """Every group's lag, once per ``LAG_SAMPLE_S``, until ``end_at`` (monotonic)."""
    samples: list[dict[str, int | None]] = []
    while time.monotonic() < end_at:
        sampled_at = time.monotonic()
        samples.append(_lags(bootstrap))
        # pacing the sampler (one sample per LAG_SAMPLE_S), not waiting for a condition
        time.sleep(max(0.0, LAG_SAMPLE_S - (time.monotonic() - sampled_at)))
    return samples


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """``crosscam bench pipeline``: the whole pipeline on the local stack for ``--seconds``.

    Starts the stack (if asked), measures, and stops the stack again if this call started it.
    """
    # Ours to stop only when none of it ran before: a stack someone else started stays up.
    started = args.stack and all(stack.status().get(s) == "down" for s in stack.SERVICES)
    if args.stack:
        stack.up()
    try:
        return _measure(args)
    finally:
        if started:
            stack.down()


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    bootstrap, redis_url = stack.kafka_bootstrap(), stack.redis_url()
    asyncio.run(pipeline.reset_state(bootstrap, redis_url))
    shutil.rmtree(out / "reid", ignore_errors=True)
    shutil.rmtree(out / "logs", ignore_errors=True)
    for i in range(args.cameras):  # cameras of an earlier run are stopped first
        stack.rtsp_unpublish(f"bench{i}")
    cameras_file, cams = _cameras_file(out, args.cameras, args.fps, not args.live_encode)
    # ingest analyses every frame the camera sends (the default samples to 7 fps)
    os.environ["CROSSCAM_INGEST__ANALYSIS_FPS"] = str(args.fps)
    replicas = _parse_replicas(args.replicas)
    base = args.metrics_base_port or faults.free_port_range(METRICS_PORTS)
    specs = build_specs(
        cameras_file,
        only={"ingest", "detector", "tracker", "reid"},
        replicas=replicas,
        data_dir=out / "reid",
        metrics_base_port=base,
        reid_api_port=faults.free_port_range(1, low=base + METRICS_PORTS),
    )
    # Stages first, cameras once every stage consumes: no start-up backlog to clear.
    stage_sup = Supervisor([x for x in specs if not x.name.startswith("ingest-")], out / "logs")
    ingest_sup = Supervisor([x for x in specs if x.name.startswith("ingest-")], out / "logs")
    stop = threading.Event()
    threads = [
        threading.Thread(target=x.run, args=(stop,), daemon=True) for x in (stage_sup, ingest_sup)
    ]
    t_start = time.monotonic()
    threads[0].start()
    bound = args.cameras * args.fps * MAX_LAG_S
    try:
        drained = args.cameras * args.fps * WARMUP_LAG_S
        _warm_up(out, stage_sup, threads[1], cams, bootstrap, redis_url, drained)
        warmup_s = time.monotonic() - t_start
        load_start = os.getloadavg()
        first = _snapshot(bootstrap, stage_sup, ingest_sup)
        samples = _sample_lags(bootstrap, first["t"] + args.seconds)
        last = _snapshot(bootstrap, stage_sup, ingest_sup)
        end_lags = _lags(bootstrap)
        restarts = {**stage_sup.restarts(), **ingest_sup.restarts()}
    finally:
        stop.set()
        for th in threads:
            if th.is_alive():
                th.join(120)
    return _report(args, out, first, last, samples, end_lags, restarts, warmup_s, load_start,
                   bootstrap, cams, bound)  # fmt: skip


def _report(
    args: argparse.Namespace,
    out: Path,
    first: dict[str, Any],
    last: dict[str, Any],
    samples: list[dict[str, int | None]],
    end_lags: dict[str, int | None],
    restarts: dict[str, int],
    warmup_s: float,
    load_start: tuple[float, float, float],
    bootstrap: str,
    cams: list[str],
    bound: int,
) -> dict[str, Any]:
    """The bench's JSON: throughput, lag, latency, bytes and CPU between two snapshots."""
    window = last["t"] - first["t"]
    frames_published = last["frames_end"] - first["frames_end"]
    consumed = {s: last[s] - first[s] for s in GROUPS}
    per_frame_base = {
        "ingest": frames_published,
        "detector": consumed["detector"],
        "tracker": consumed["tracker"],
        "reid": consumed["detector"],  # reid's cost per frame of video, not per tracklet
    }
    cpu = _cpu_per_stage(first["cpu"], last["cpu"], per_frame_base, window)
    detector_ms = _detector_wall_ms(
        first["detector_seconds"], last["detector_seconds"], consumed["detector"]
    )
    max_lag = {s: max((x[s] or 0) for x in samples) if samples else None for s in GROUPS}
    latency, volume = _latencies_and_bytes(
        bootstrap, first["wall_ns"], last["wall_ns"], cams, window
    )
    kept_up = (
        all((end_lags[s] or 0) <= bound for s in ("detector", "tracker"))
        and consumed["detector"] >= MIN_THROUGHPUT_RATIO * frames_published
        and not any(restarts.values())
    )
    return {
        "cameras": args.cameras,
        "fps": args.fps,
        "seconds": round(window, 1),
        "warmup_s": round(warmup_s, 1),
        "kept_up": kept_up,
        "frames_published": frames_published,
        "frames_published_per_s": round(frames_published / window, 2),
        "frames_consumed": consumed,
        "lag": {"max": max_lag, "end": end_lags, "bound_messages": bound},
        "latency": latency,
        "kafka": volume,
        "cpu_per_stage": cpu,
        "detector_wall_ms_per_frame": detector_ms,
        "cpu_ms_per_frame_total": round(sum(v["cpu_ms_per_frame"] or 0 for v in cpu.values()), 1),
        "camera_frames_per_s_per_core": _per_core(
            consumed["detector"], {k: v["cpu_seconds"] for k, v in cpu.items()}, window
        ),
        "cameras_served": "live x264 per camera" if args.live_encode else "pre-encoded H.264",
        "restarts": restarts,
        "cores": os.cpu_count(),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "logs": str(out / "logs"),
    }


def _per_core(frames: int, cpu_by_stage: dict[str, float], window_s: float) -> float | None:
    """Frames the detector consumed per second, per core the pipeline's processes kept busy."""
    cores_busy = sum(cpu_by_stage.values()) / window_s if window_s > 0 else 0.0
    if not frames or cores_busy <= 0:
        return None
    return round(frames / window_s / cores_busy, 2)


def main(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    if args.cameras < 1 or args.fps <= 0 or args.seconds <= 0:
        print("--cameras, --fps and --seconds must be positive", file=sys.stderr)
        return 2
    result = run_bench(args)
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(json.dumps(result, indent=2), flush=True)
    return 0
