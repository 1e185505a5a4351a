"""``crosscam bench store``: vector store query latency, embedded (qdrant-edge) vs qdrant-client local mode.

Fills each store with the same N synthetic tracklets (512-d unit vectors drawn
around a few thousand "people", so neighbours are meaningful; payload camera
and time as the ReID stage writes them), then times top-k queries: plain, and
filtered the way the linker filters (a few cameras and a time window).
Prints JSON: per backend, fill seconds and query latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common.units import NS_PER_S
from common.vectors import l2_normalise
from reid.qdrant_store import open_store
from reid.store import Scope, StoredTracklet

PEOPLE_PER_POINT = 0.05
"""Distinct people per stored tracklet (about 20 tracklets each)."""
UPSERT_BATCH = 1000


def synthetic(
    n: int, dim: int, cameras: int, seed: int = 0
) -> tuple[np.ndarray, list[StoredTracklet]]:
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(max(int(n * PEOPLE_PER_POINT), 1), dim)).astype(np.float32)
    who = rng.integers(0, len(people), size=n)
    vecs = people[who] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    vecs = l2_normalise(vecs)
    t = np.sort(rng.uniform(0, 86_400, size=n))  # one day
    recs = [
        StoredTracklet(
            f"cam{i % cameras}:{i}:{int(t[i] * NS_PER_S)}",
            f"cam{i % cameras}",
            int(t[i] * NS_PER_S),
            int((t[i] + 5) * NS_PER_S),
            f"g{who[i]}",
            vecs[i],
        )  # fmt: skip
        for i in range(n)
    ]
    return vecs, recs


def bench_one(
    kind: str, recs: list[StoredTracklet], queries: np.ndarray, dim: int, k: int, cameras: int
) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"crosscam-bench-{kind}-") as tmp:
        store = open_store(kind, Path(tmp) / "store", dim)
        t0 = time.perf_counter()
        for i in range(0, len(recs), UPSERT_BATCH):
            store.upsert(recs[i : i + UPSERT_BATCH])
        fill = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        out: dict = {"points": store.count(), "fill_seconds": round(fill, 2)}
        for name, filtered in (("top_k", False), ("top_k_filtered", True)):
            lat = []
            for q in queries:
                scope = Scope()
                if filtered:
                    t = float(rng.uniform(0, 86_400))
                    cams = frozenset(f"cam{c}" for c in rng.choice(cameras, size=3, replace=False))
                    scope = Scope(
                        cameras=cams,
                        ts_from_ns=int((t - 300) * NS_PER_S),
                        ts_to_ns=int((t + 300) * NS_PER_S),
                    )
                t0 = time.perf_counter()
                store.search(q, scope, limit=k)
                lat.append(time.perf_counter() - t0)
            a = np.asarray(lat) * 1000
            out[name] = {"queries": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
                         "p95_ms": round(float(np.percentile(a, 95)), 2), "mean_ms": round(float(a.mean()), 2)}  # fmt: skip
        store.close()
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, default=100_000, help="stored tracklets")
    parser.add_argument("--dim", type=int, default=512, help="vector size (OSNet: 512)")
    parser.add_argument(
        "--queries", type=int, default=50, help="queries timed per backend and kind"
    )
    parser.add_argument("--k", type=int, default=10, help="top-k")
    parser.add_argument("--cameras", type=int, default=20, help="cameras in the payload")
    parser.add_argument("--backends", default="edge,local", help="comma list of: edge, local")
    parser.add_argument("--json", action="store_true", help="print one JSON line")


def main(args: argparse.Namespace) -> int:
    vecs, recs = synthetic(args.points, args.dim, args.cameras)
    queries = vecs[np.random.default_rng(2).choice(len(vecs), size=args.queries, replace=False)]
    report: dict = {
        "points": args.points,
        "dim": args.dim,
        "k": args.k,
        "cameras": args.cameras,
        "backends": {},
    }
    for kind in args.backends.split(","):
        report["backends"][kind] = bench_one(
            kind.strip(), recs, queries, args.dim, args.k, args.cameras
        )
    print(json.dumps(report, indent=None if args.json else 1))
    return 0
