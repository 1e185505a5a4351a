"""``crosscam bench linker``: the linker's CPU cost per tracklet as its live window grows.

A synthetic site, seeded: ``--cameras`` cameras in a corridor (each linked to the
next, transit 2-30 s), people arriving every ``--arrival-s`` seconds at a random
camera and walking on through 1-4 cameras, each sighting a 512-d unit vector (the
person, plus noise, plus the camera's own look) lasting 3-8 s. Tracklets are fed
to :meth:`reid.linker.Linker.add_live` in the order they end, nothing leaves the
window, and the wall time of each call is recorded: the report gives the mean
over the tracklets just before each checkpoint (``--at``) of live tracklets, with
the refinement of the clustering on (the default) and off. Maths libraries are
pinned to one thread, as :mod:`bench.tracker` does. Calibration and whole-window
re-linking run as in production (up to
:data:`reid.linker.RELINK_EVERY_ADD_MAX_LIVE` live tracklets every tracklet
re-links the window; above it the epochs apply, so the mean there mixes cheap
adds and rebuilds).
"""

from __future__ import annotations

# isort: off
import bench.tracker as _pinned  # (pins maths threads to one before numpy loads)

# isort: on

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from itertools import count  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from reid.linker import NS, RELINK_EVERY_ADD_MAX_LIVE, Linker, LinkerParams, Sighting  # noqa: E402
from reid.topology import Topology  # noqa: E402
from schemas.cameras import Camera, CamerasFile, Link  # noqa: E402

DIM = 512


def site(cameras: int) -> Topology:
    ids = [f"cam{k}" for k in range(cameras)]
    return Topology(
        CamerasFile(
            window_s=60.0,
            cameras=[Camera(id=c) for c in ids],
            links=[
                Link(a=ids[k], b=ids[k + 1], min_transit_s=2.0, max_transit_s=30.0)
                for k in range(cameras - 1)
            ],
        )
    )


def sightings(n: int, cameras: int, arrival_s: float, seed: int) -> list[Sighting]:
    """``n`` tracklets of people walking along the corridor, in the order they end."""
    rng = np.random.default_rng(seed)
    looks = rng.normal(size=(cameras, DIM))
    looks /= np.linalg.norm(looks, axis=1, keepdims=True)
    out: list[Sighting] = []
    person = 0
    while len(out) < n:
        v = rng.normal(size=DIM)
        v /= np.linalg.norm(v)
        cam = int(rng.integers(cameras))
        t = person * arrival_s
        for _ in range(int(rng.integers(1, 5))):
            if cam >= cameras:
                break
            length = float(rng.uniform(3.0, 8.0))
            x = v + 0.3 * rng.normal(size=DIM) / np.sqrt(DIM) + 0.4 * looks[cam]
            x /= np.linalg.norm(x)
            out.append(
                Sighting(
                    f"t{len(out)}",
                    f"cam{cam}",
                    int(t * NS),
                    int((t + length) * NS),
                    x.astype(np.float32),
                )
            )
            t += length + float(rng.uniform(2.0, 30.0))
            cam += 1
        person += 1
    out = out[:n]
    out.sort(key=lambda s: (s.ts_end_ns, s.tracklet_id))
    return out


def timed(run: list[Sighting], topology: Topology, refine: bool, at: list[int]) -> dict[str, Any]:
    ids = count(1)
    params = LinkerParams(refine_moves=refine, revisit_window_s=1e9, max_live_tracklets=max(at) + 1)
    lk = Linker(topology, params, lambda: f"g{next(ids)}")
    times: list[float] = []
    for s in run:
        t0 = time.perf_counter()
        lk.add_live(s)
        times.append(time.perf_counter() - t0)
    out: dict[str, Any] = {}
    for n in at:
        window = times[max(0, n - 20) : n]
        out[str(n)] = round(1000.0 * float(np.mean(window)), 2)
    identities = len(set(lk.identities().values()))
    return {"ms_per_tracklet_at_live": out, "identities": identities}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=12)
    parser.add_argument(
        "--at", type=int, nargs="+", default=[100, 200, 500, 1000], help="live-window checkpoints"
    )
    parser.add_argument("--arrival-s", type=float, default=2.0, help="a person every this many s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")


def main(args: argparse.Namespace) -> int:
    if not _pinned._PINNED_BEFORE_NUMPY and not os.environ.get("CROSSCAM_BENCH_PINNED"):
        # numpy was loaded first with its own thread pools: start clean, one thread
        env = {
            **os.environ,
            **dict.fromkeys(_pinned._THREAD_VARS, "1"),
            "CROSSCAM_BENCH_PINNED": "1",
        }
        return subprocess.call([sys.executable, "-m", "crosscam.cli", *sys.argv[1:]], env=env)
    if args.cameras < 2 or min(args.at) < 20:
        raise SystemExit("need at least 2 cameras and checkpoints of at least 20 tracklets")
    load_start = os.getloadavg()
    topology = site(args.cameras)
    run = sightings(max(args.at), args.cameras, args.arrival_s, args.seed)
    report: dict[str, Any] = {
        "cameras": args.cameras,
        "vector_dim": DIM,
        "tracklets": len(run),
        "relink_every_add_up_to_live": RELINK_EVERY_ADD_MAX_LIVE,
        "mean_over": "the 20 tracklets before each checkpoint",
        "threads": {v: os.environ.get(v) for v in _pinned._THREAD_VARS},
        "refine_on": timed(run, topology, True, sorted(args.at)),
        "refine_off": timed(run, topology, False, sorted(args.at)),
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0
