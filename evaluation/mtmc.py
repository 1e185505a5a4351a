"""``crosscam eval mtmc``: cross-camera linking scored against a scenario's ground truth.

Two runs, each with and without the topology's links:

* ``gt_tracklets`` — linking alone: tracklets built from the per-camera GT
  boxes (a PETS id's run of frames in one view, split at gaps), crops cut from
  the camera's video and embedded with the detector's embedder, fed to the
  ReID engine in the order they end.
* ``live`` — the full system: detector + tracker cores over every camera's
  video, cameras interleaved by capture time, each finished tracklet fed to
  the engine as it finishes.

Figures: a *link* is a pair of tracklets on different cameras that the system
put in one global identity (counted over identities, not direct links); it is
right when the tracklets' ground-truth identities (majority of their boxes'
GT ids, merged re-entries included) agree. ``link_precision``,
``link_recall``, ``link_f1`` over those pairs, and ``idf1`` of global ids over
every camera's boxes (the MTMC IDF1 of DukeMTMC: each camera-frame is one
frame, ids are global).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import zlib
from collections import Counter
from itertools import count
from pathlib import Path

import msgspec
import numpy as np

from detector.config import MotionGateConfig
from evaluation.analysis import (
    add_appearance_argument,
    runtime_config,
    scenario_int8_calibration,
)
from evaluation.mtmc_scoring import (
    Sample,
    Scenario,
    gt_tracklets,
    label_live,
    link_scores,
    load_samples,
    mtmc_idf1,
    read_frames,
    save_samples,
)
from reid.aggregate import AggregationParams
from reid.engine import Engine, EngineParams
from reid.linker import LinkerParams
from reid.qdrant_store import open_store
from reid.topology import Topology
from schemas.messages import pack_f32, unpack_f32
from service.assets import models_dir

# --- runs ---------------------------------------------------------------------------------


def run_engine(
    scn: Scenario, samples: list[Sample], topology: Topology, params: EngineParams, store_kind: str
) -> tuple[dict[str, str], dict]:
    """Feed tracklets in the order they end through a fresh engine; final identities and counts."""
    with tempfile.TemporaryDirectory(prefix="crosscam-eval-") as tmp:
        store = open_store(store_kind, Path(tmp) / "store", dim=512)
        ids = count(1)
        engine = Engine(
            store, topology, params, new_global_id=lambda: f"g{next(ids)}", thumbnails_dir=None
        )
        kinds: Counter[str] = Counter()
        t0 = time.perf_counter()
        for s in samples:  # in the order they finished
            for e in engine.process(s.tracklet).events:
                kinds[e.kind] += 1
        elapsed = time.perf_counter() - t0
        predicted = engine.identities([s.tracklet.tracklet_id for s in samples])
        store.close()
    return predicted, {
        "events": dict(kinds),
        "link_seconds_per_tracklet": round(elapsed / max(len(samples), 1), 5),
    }


def score(
    scn: Scenario, samples: list[Sample], topology: Topology, params: EngineParams, store_kind: str
) -> dict:
    predicted, extra = run_engine(scn, samples, topology, params, store_kind)
    out = link_scores(samples, predicted)
    out["idf1"] = mtmc_idf1(scn, samples, predicted)
    out["identities"] = len(set(predicted.values()))
    out.update(extra)
    return out


PERTURB_KEEP = 0.9
"""``--perturb``: share of each tracklet's per-frame vectors kept in a perturbed run."""


def thinned(samples: list[Sample], seed: int, keep: float = PERTURB_KEEP) -> list[Sample]:
    """The same tracklets, each with a random ``keep`` share of its appearance vectors.

    Per-frame vectors and crops' vectors alike (a dropped crop keeps its image
    and loses its vectors); a tracklet never loses its last vector. Seeded per
    (seed, tracklet id), so a run is repeatable and the choice for one tracklet
    does not depend on the others.
    """
    out = []
    for s in samples:
        t = s.tracklet
        frames = (
            unpack_f32(t.embeddings, t.embedding_dim) if t.embedding_dim and t.embeddings else None
        )
        n_frames = 0 if frames is None else len(frames)
        with_vec = [k for k, c in enumerate(t.crops) if c.embedding]
        total = n_frames + len(with_vec)
        if not total:
            out.append(s)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(t.tracklet_id.encode())])
        mask = rng.random(total) < keep
        if not mask.any():
            mask[int(rng.integers(total))] = True
        dropped = {with_vec[k] for k in np.flatnonzero(~mask[n_frames:])}
        crops = [
            msgspec.structs.replace(c, embedding=b"", embedding_grey=b"") if k in dropped else c
            for k, c in enumerate(t.crops)
        ]
        changes: dict = {"crops": crops}
        if frames is not None:
            kept = frames[mask[:n_frames]]
            changes["embeddings"] = pack_f32(kept) if len(kept) else b""
            changes["embedding_dim"] = t.embedding_dim if len(kept) else 0
        out.append(dataclasses.replace(s, tracklet=msgspec.structs.replace(t, **changes)))
    return out


def perturbed(
    scn: Scenario,
    samples: list[Sample],
    topology: Topology,
    params: EngineParams,
    store_kind: str,
    seeds: int,
) -> dict:
    """Link F1 and IDF1 over ``seeds`` runs on thinned vectors (:func:`thinned`): how far
    the figure moves when a tenth of the appearance evidence changes. A difference
    between two settings smaller than this spread is not a difference."""
    runs = [score(scn, thinned(samples, k), topology, params, store_kind) for k in range(seeds)]
    out: dict = {"seeds": seeds, "vectors_kept": PERTURB_KEEP}
    for key in ("link_f1", "idf1"):
        v = np.array([r[key] for r in runs], np.float64)
        out[key] = {
            "mean": round(float(v.mean()), 4),
            "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "min": round(float(v.min()), 4),
            "max": round(float(v.max()), 4),
        }
    return out


def greyscale_cameras(scn: Scenario, frames: int = 15) -> frozenset[str]:
    """Cameras whose first frames carry no colour (as the detector decides it)."""
    from detector.greyscale import GreyscaleCameras

    judge = GreyscaleCameras()
    for cam in scn.cameras:
        for i, frame in enumerate(read_frames(scn.video(cam))):
            judge.observe(cam, frame)
            if i + 1 >= frames:
                break
    return frozenset(c for c in scn.cameras if judge.is_greyscale(c))


def engine_params(
    link_distance: float | None,
    shot_weight: float | None,
    calibrated: bool = True,
    transit_evidence: bool = True,
) -> EngineParams:
    """Default linking settings with the command line's overrides."""
    base = LinkerParams()
    lp = LinkerParams(
        link_distance=base.link_distance if link_distance is None else link_distance,
        shot_weight=base.shot_weight if shot_weight is None else shot_weight,
        calibration=base.calibration.model_copy(
            update={"enabled": calibrated, "transit_evidence": transit_evidence}
        ),
        link_same_camera=base.link_same_camera and calibrated,
    )
    return EngineParams(linker=lp, aggregation=AggregationParams())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", type=Path, required=True, help="folder written by `crosscam scenario pets`"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--mode", choices=("all", "gt", "live"), default="all", help="which runs")
    parser.add_argument(
        "--link-distance", type=float, default=None, help="override LinkerParams.link_distance"
    )
    parser.add_argument(
        "--shot-weight", type=float, default=None, help="override LinkerParams.shot_weight"
    )
    parser.add_argument(
        "--calibration",
        choices=("on", "off"),
        default="on",
        help="off: the linker before calibration (one absolute link_distance for every "
        "camera pair, no same-camera links)",
    )
    parser.add_argument(
        "--transit-evidence",
        choices=("on", "off"),
        default="on",
        help="off: transit times only bound links (the calibrated linker before it learnt "
        "each camera pair's transit times from its confident links)",
    )
    parser.add_argument(
        "--store", default="edge", choices=("edge", "local"), help="embedded store backend"
    )
    parser.add_argument("--frames", type=int, default=None, help="live run: first N frames only")
    add_appearance_argument(parser)
    parser.add_argument(
        "--motion-gate",
        choices=("on", "off"),
        default="on" if MotionGateConfig().enabled else "off",
        help="live mode: frames in which nothing moved repeat the camera's last analysed "
        "frame's detections, as the detector stage does ([detector.motion_gate] enabled)",
    )
    parser.add_argument(
        "--reuse-live",
        action="store_true",
        help="reuse the live run's tracklets saved in DIR/cache (skip detector and tracker; for tuning the linker)",
    )
    parser.add_argument(
        "--perturb",
        type=int,
        default=0,
        metavar="N",
        help="also link N times with a random 90%% of each tracklet's per-frame vectors and "
        "report the spread of link F1 and IDF1 (with topology): how much of a difference "
        "between two settings is noise",
    )


def main(args: argparse.Namespace) -> int:
    from detector.config import OnnxEmbedderConfig
    from detector.embedder import build_embedder
    from detector.greyscale import grey_crops

    scn = Scenario.load(args.scenario)
    params = engine_params(
        args.link_distance,
        args.shot_weight,
        args.calibration == "on",
        args.transit_evidence == "on",
    )
    report: dict = {"scenario": str(args.scenario), "cameras": scn.cameras, "link_distance": params.linker.link_distance, "calibration": args.calibration, "transit_evidence": args.transit_evidence,
                    "shot_weight": params.linker.shot_weight}  # fmt: skip
    if args.mode in ("all", "gt"):
        calibration = scenario_int8_calibration(scn, args.embedder_precision)
        embedder = build_embedder(
            OnnxEmbedderConfig(),
            runtime_config(args.embedder_precision, calibration),
            models_dir(),
        )
        grey = greyscale_cameras(scn)
        samples = gt_tracklets(
            scn,
            lambda crops: embedder.embed(crops),
            (lambda crops: embedder.embed(grey_crops(crops))) if grey else None,
            grey,
        )
        report["gt_tracklets"] = {
            "tracklets": len(samples),
            "with_topology": score(scn, samples, scn.topology, params, args.store),
            "without_topology": score(
                scn, samples, scn.topology.without_links(), params, args.store
            ),
        }
        if args.perturb:
            report["gt_tracklets"]["with_topology_perturbed"] = perturbed(
                scn, samples, scn.topology, params, args.store, args.perturb
            )
    if args.mode in ("all", "live"):
        from evaluation.inprocess import live_tracklets

        on_demand = "_" + args.appearance.replace("-", "_")
        if args.embedder_precision != "f32":
            on_demand += f"_{args.embedder_precision}"
        if args.motion_gate == "on":
            on_demand += "_gated"
        cache = (
            args.scenario / "cache" / f"live_tracklets_{args.frames or 'all'}{on_demand}.msgpack"
        )
        if args.reuse_live and cache.exists():
            samples, info = load_samples(scn, cache)
        else:
            t0 = time.perf_counter()
            samples, info = live_tracklets(
                scn,
                max_frames=args.frames,
                appearance=args.appearance,
                precision=args.embedder_precision,
                motion_gate=args.motion_gate == "on",
            )
            info["pipeline_seconds"] = round(time.perf_counter() - t0, 1)
            save_samples(cache, samples, info)
        label_live(scn, samples)
        report["live"] = {
            "tracklets": len(samples),
            **info,
            "with_topology": score(scn, samples, scn.topology, params, args.store),
            "without_topology": score(
                scn, samples, scn.topology.without_links(), params, args.store
            ),
        }
        if args.perturb:
            report["live"]["with_topology_perturbed"] = perturbed(
                scn, samples, scn.topology, params, args.store, args.perturb
            )
    print(json.dumps(report, indent=None if args.json else 1))
    return 0
