"""``crosscam scenario pets``: cut PETS09-S2L1 into a multi-camera scenario.

No public multi-camera data set can be fetched here, so one is built from the
real video: the 768×576 view is cut into N vertical strips (people in PETS
S2L1 mostly walk left-right, so they cross from strip to strip) with a gap of
``gap_px`` between strips, so nobody is in two views at once and crossing
takes time. Each strip becomes a camera with its own look (exposure, gamma,
white balance, blur, scale) so appearance changes between cameras as it does
in a real network.

Written to ``DIR``:

* ``<cam>.mp4`` (H.264 via /usr/bin/ffmpeg) or ``<cam>.avi`` (MJPG) at the
  sequence's 7 fps, every side ≤ 720 px;
* ``gt/<cam>.txt`` — per-camera ground truth, MOT format (frame, PETS id,
  x, y, w, h, 1, 1, visible fraction), boxes clipped to the view and scaled;
* ``identities.json`` — PETS id → global identity (PETS gives a person who
  leaves and comes back a new id; :data:`PETS_SAME_PERSON` merges them);
* ``cameras.toml`` — the cameras file (sources relative to ``DIR``, map
  location = strip centre in the original image, links between neighbouring
  strips with transit bounds from the gap width and walking speeds);
* ``scenario.json`` — frame rate, start time, views and looks, for the evaluation;
* ``identity_check.json`` and ``contact_<id>.png`` — OSNet distances and
  contact sheets that back the identity merges; ``README.md`` says how.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from common.units import NS_PER_S
from common.vectors import l2_normalise
from schemas.cameras import Camera, CamerasFile, Link, Location, dump_cameras_toml
from service.assets import models_dir, pets_dir

log = logging.getLogger(__name__)

SEQUENCE_FPS = 7.0
"""PETS09-S2L1's frame rate (seqinfo.ini); the AVI header says 10, the sequence was shot at 7."""

T0_NS = 1_230_768_000 * NS_PER_S
"""Capture time of frame 0 (2009-01-01 00:00 UTC): a fixed epoch so replays give the same ids."""

SOURCE_W, SOURCE_H = 768, 576

PETS_SAME_PERSON: dict[int, int] = {9: 5, 10: 6, 11: 3, 12: 4, 13: 2, 15: 14, 18: 14, 8: 14, 19: 1}
"""PETS ids that are one person who left the image and came back (id → the id kept).

Checked by OSNet distances (``identity_check.json``) and by eye on contact
sheets (see the scenario README). Every pair of ids that never share a frame
and lie within 0.15 cosine distance is here, and nothing else: the next
closest such pair is at 0.167 (5 and 13, who share frames with each other's
partners, so cannot be one person). The man in the leather jacket carrying a
white paper is 15, 14, 18 and 8; the man in the long black coat is 19 and 1
(19 does not look like 8: 0.32 apart).
"""

MIN_VISIBLE_FRACTION = 0.6
"""A GT box counts in a view when at least this much of it lies inside: a person
mostly cut off by the view edge is not something a detector finds or a ReID
model can recognise."""

FAST_WALK_PERCENTILE = 99.0
"""Walking speed taken as 'fast' when deriving the minimum transit across a gap."""

MAX_TRANSIT_S = 60.0
"""Slowest walk between neighbouring views still counted as a transit: people in
S2L1 also leave the covered area between two strips and come back. Measured
with ``crosscam eval mtmc`` on the 3-view cut: 30 s cut linking recall on GT
tracklets from 0.85 to 0.73 (link F1 0.92 → 0.84); 60 s loses nothing there."""

CHECK_CROPS_PER_ID = 12


@dataclass(frozen=True)
class Look:
    """How one camera renders the scene.

    Exposure gain, gamma, white balance, blur and scale, then what a cheap or
    night camera adds: ``grey`` (luminance only, as an IR/night camera sees),
    ``noise_sigma`` (Gaussian sensor noise per channel, in 8-bit levels) and
    ``jpeg_quality`` (each frame round-tripped through JPEG at this quality;
    0 = not).
    """

    gain: float
    gamma: float
    wb_bgr: tuple[float, float, float]
    blur_sigma: float
    scale: float
    grey: bool = False
    noise_sigma: float = 0.0
    jpeg_quality: int = 0

    def apply(self, view_bgr: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The view as this camera sees it (uint8 BGR, scaled)."""
        img = view_bgr.astype(np.float32) / 255.0
        img = np.power(
            np.clip(img * self.gain * np.asarray(self.wb_bgr, np.float32), 0, 1), self.gamma
        )
        out = (img * 255.0 + 0.5).astype(np.uint8)
        if self.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), self.blur_sigma)
        h, w = out.shape[:2]
        size = (_even(w * self.scale), _even(h * self.scale))
        out = cv2.resize(
            out, size, interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        )
        return self._degrade(out, rng or np.random.default_rng(0))

    def _degrade(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.grey:
            out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        if self.noise_sigma > 0:
            shape = out.shape[:2] + ((1,) if self.grey else (3,))
            noise = rng.normal(0.0, self.noise_sigma, shape).astype(np.float32)
            out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if self.jpeg_quality > 0:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
            if decoded is not None:
                out = np.asarray(decoded, np.uint8)
        return out


LOOKS: tuple[Look, ...] = (
    Look(gain=0.8, gamma=1.15, wb_bgr=(0.9, 1.0, 1.15), blur_sigma=0.0, scale=1.0),  # dim, warm
    Look(gain=1.15, gamma=0.9, wb_bgr=(1.15, 1.0, 0.88), blur_sigma=1.0, scale=1.2),  # bright, cool
    Look(gain=1.0, gamma=1.0, wb_bgr=(1.0, 1.06, 0.95), blur_sigma=1.6, scale=0.8),  # soft, small
    Look(gain=0.9, gamma=1.05, wb_bgr=(0.95, 1.0, 1.08), blur_sigma=0.6, scale=1.1),
    Look(gain=1.05, gamma=0.95, wb_bgr=(1.05, 0.97, 1.0), blur_sigma=0.3, scale=0.9),
    Look(gain=0.95, gamma=1.1, wb_bgr=(1.0, 1.0, 1.05), blur_sigma=0.8, scale=1.0),
)
"""Each camera's base look, by position (cam0 gets the first)."""

DEGRADATIONS: dict[str, dict] = {
    "grey": {"grey": True},
    "cast": {"wb_bgr": (1.3, 0.95, 0.7)},
    "warmcast": {"wb_bgr": (0.7, 0.95, 1.3)},
    "noise": {"noise_sigma": 9.0},
    "lowres": {"scale": 0.5},
    "jpeg": {"jpeg_quality": 12},
    "dark": {"gain": 0.55, "gamma": 1.25},
}
"""What ``--look cam=NAME[+NAME...]`` does to a camera's base look: a real network's
night (IR, greyscale) cameras, sensors with a colour cast or noise, low
resolution and heavy compression. ``cast`` replaces the white balance with a
strong blue one, ``lowres`` halves the base scale, the rest set the field."""


def degrade(look: Look, names: str) -> Look:
    """``look`` with the ``+``-separated :data:`DEGRADATIONS` applied (ValueError on an unknown one)."""
    for name in filter(None, names.split("+")):
        if name not in DEGRADATIONS:
            raise ValueError(f"unknown look {name!r}; known: {', '.join(sorted(DEGRADATIONS))}")
        change = dict(DEGRADATIONS[name])
        if "scale" in change:
            change["scale"] = look.scale * change["scale"]
        look = replace(look, **change)
    return look


def parse_looks(spec: str) -> dict[str, str]:
    """``cam1=grey,cam2=cast+noise`` → {camera: degradations} (ValueError when malformed)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        cam, sep, names = part.partition("=")
        if not sep or not cam.strip() or not names.strip():
            raise ValueError(f"--look wants CAM=LOOK[+LOOK], got {part!r}")
        out[cam.strip()] = names.strip()
    return out


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


@dataclass(frozen=True)
class View:
    """One camera's region of the source image and its look."""

    camera_id: str
    x0: int
    x1: int
    look: Look

    def to_view(self, boxes_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip source boxes (N, 4 x, y, w, h) to the view; (boxes in view pixels, visible fraction)."""
        x1 = np.clip(boxes_xywh[:, 0], self.x0, self.x1)
        x2 = np.clip(boxes_xywh[:, 0] + boxes_xywh[:, 2], self.x0, self.x1)
        y1 = np.clip(boxes_xywh[:, 1], 0, SOURCE_H)
        y2 = np.clip(boxes_xywh[:, 1] + boxes_xywh[:, 3], 0, SOURCE_H)
        area = np.maximum(boxes_xywh[:, 2] * boxes_xywh[:, 3], 1e-6)
        frac = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0) / area
        s = self.look.scale
        out = np.stack([(x1 - self.x0) * s, y1 * s, (x2 - x1) * s, (y2 - y1) * s], axis=1)
        return out, frac


def make_views(cameras: int, gap_px: int, looks: dict[str, str] | None = None) -> list[View]:
    """N vertical strips of equal width with ``gap_px`` between them.

    ``looks``: camera id → :data:`DEGRADATIONS` names applied to its base look.
    """
    looks = looks or {}
    width = _even((SOURCE_W - (cameras - 1) * gap_px) / cameras) - 2
    if width < 64:
        raise ValueError(f"{cameras} views with {gap_px} px gaps leave {width} px per view")
    unknown = set(looks) - {f"cam{i}" for i in range(cameras)}
    if unknown:
        raise ValueError(f"--look names cameras that are not in the cut: {sorted(unknown)}")
    views = []
    for i in range(cameras):
        x0 = i * (width + gap_px)
        cam = f"cam{i}"
        views.append(View(cam, x0, x0 + width, degrade(LOOKS[i % len(LOOKS)], looks.get(cam, ""))))
    return views


def global_id_of(pets_id: int) -> str:
    """The scenario's global identity of a PETS id (merged re-entries share one)."""
    return f"p{PETS_SAME_PERSON.get(pets_id, pets_id)}"


def load_pets_gt(path: Path) -> np.ndarray:
    """gt.txt rows (frame 1-based, id, x, y, w, h, ...) as float64."""
    return np.loadtxt(path, delimiter=",", ndmin=2)


def _walk_speeds_px_s(gt: np.ndarray) -> np.ndarray:
    speeds = []
    for pid in np.unique(gt[:, 1]):
        rows = gt[gt[:, 1] == pid]
        rows = rows[np.argsort(rows[:, 0])]
        foot = np.stack([rows[:, 2] + rows[:, 4] / 2, rows[:, 3] + rows[:, 5]], axis=1)
        dt = np.diff(rows[:, 0]) / SEQUENCE_FPS
        ok = dt > 0
        speeds.append(np.linalg.norm(np.diff(foot, axis=0), axis=1)[ok] / dt[ok])
    return np.concatenate(speeds) if speeds else np.zeros(0)


CAMERA_KEY_INT = 10
"""Keyframe interval of scenario videos. They are encoded as a camera sends H.264 (baseline,
no B-frames, a keyframe every 10 frames, as the test RTSP server's cameras), so the demo
serves the very file the in-process evaluation reads, bit for bit, without re-encoding it."""


class _Writer:
    """mp4 through ffmpeg (H.264) or MJPG AVI through OpenCV."""

    def __init__(self, path: Path, size: tuple[int, int], fmt: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.cv: cv2.VideoWriter | None = None
        if fmt == "mp4":
            w, h = size
            cmd = [
                shutil.which("ffmpeg") or "/usr/bin/ffmpeg",
                "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", str(SEQUENCE_FPS), "-i", "-",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-profile:v", "baseline", "-bf", "0", "-g", str(CAMERA_KEY_INT),
                "-keyint_min", str(CAMERA_KEY_INT), "-sc_threshold", "0",
                "-movflags", "+faststart", str(path),
            ]  # fmt: skip
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        else:
            self.cv = cv2.VideoWriter(
                str(path), cv2.VideoWriter.fourcc(*"MJPG"), SEQUENCE_FPS, size
            )

    def write(self, img: np.ndarray) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(np.ascontiguousarray(img).tobytes())
        elif self.cv is not None:
            self.cv.write(img)

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            if self.proc.wait() != 0:
                raise RuntimeError("ffmpeg failed writing a scenario video")
        if self.cv is not None:
            self.cv.release()


def build_scenario(
    out: Path,
    cameras: int = 3,
    gap_px: int = 48,
    fmt: str = "mp4",
    pets: Path | None = None,
    max_frames: int | None = None,
    looks: dict[str, str] | None = None,
) -> dict:
    """Write the scenario (see the module docstring); returns scenario.json's contents."""
    pets = pets or pets_dir()
    views = make_views(cameras, gap_px, looks)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(exist_ok=True)
    gt = load_pets_gt(pets / "gt.txt")
    ext = "mp4" if fmt == "mp4" else "avi"
    n = _write_views(out, pets / "vtest.avi", views, gt, fmt, ext, max_frames)
    speeds = _walk_speeds_px_s(gt)
    fast = float(np.percentile(speeds, FAST_WALK_PERCENTILE)) if speeds.size else 100.0
    (out / "cameras.toml").write_text(dump_cameras_toml(_cameras_spec(views, gap_px, fast, ext)))
    ids = sorted({int(i) for i in gt[:, 1]})
    (out / "identities.json").write_text(
        json.dumps({str(i): global_id_of(i) for i in ids}, indent=1)
    )
    meta = {
        "source": "PETS09-S2L1 view 1",
        "fps": SEQUENCE_FPS,
        "t0_ns": T0_NS,
        "frames": n,
        "gap_px": gap_px,
        "looks": looks or {},
        "min_visible_fraction": MIN_VISIBLE_FRACTION,
        "fast_walk_px_s": round(fast, 1),
        "views": [
            {"camera_id": v.camera_id, "x0": v.x0, "x1": v.x1, "look": asdict(v.look)}
            for v in views
        ],
    }
    (out / "scenario.json").write_text(json.dumps(meta, indent=1))
    return meta


def _write_views(
    out: Path,
    video: Path,
    views: list[View],
    gt: np.ndarray,
    fmt: str,
    ext: str,
    max_frames: int | None,
) -> int:
    """Each view's video and MOT ground truth (people at least ``MIN_VISIBLE_FRACTION``
    inside it) under ``out``; returns the number of frames written."""
    rng = np.random.default_rng(20090101)  # sensor noise: the same cut every time
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {video}")
    writers: dict[str, _Writer] = {}
    gt_lines: dict[str, list[str]] = {v.camera_id: [] for v in views}
    n = 0
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        rows = gt[gt[:, 0] == n + 1]
        for v in views:
            img = v.look.apply(frame[:, v.x0 : v.x1], rng)
            if v.camera_id not in writers:
                writers[v.camera_id] = _Writer(
                    out / f"{v.camera_id}.{ext}", (img.shape[1], img.shape[0]), fmt
                )
            writers[v.camera_id].write(img)
            boxes, frac = v.to_view(rows[:, 2:6])
            for r, b, f in zip(rows, boxes, frac, strict=True):
                if f >= MIN_VISIBLE_FRACTION:
                    gt_lines[v.camera_id].append(
                        f"{n + 1},{int(r[1])},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},1,1,{f:.3f}"
                    )
        n += 1
    cap.release()
    for w in writers.values():
        w.close()
    for cam, lines in gt_lines.items():
        (out / "gt" / f"{cam}.txt").write_text("\n".join(lines) + "\n")
    return n


def _cameras_spec(views: list[View], gap_px: int, fast_px_s: float, ext: str) -> CamerasFile:
    """The cameras file: one camera per view, neighbours linked with a minimum transit
    of the gap crossed at a fast walk."""
    min_transit = round(gap_px / fast_px_s, 2)
    return CamerasFile(
        window_s=120.0,
        cameras=[
            Camera(
                id=v.camera_id,
                name=f"PETS S2L1 strip {i} (x {v.x0}-{v.x1})",
                source=f"{v.camera_id}.{ext}",
                location=Location(x=(v.x0 + v.x1) / 2, y=SOURCE_H / 2),
            )
            for i, v in enumerate(views)
        ],
        links=[
            Link(
                a=a.camera_id, b=b.camera_id, min_transit_s=min_transit, max_transit_s=MAX_TRANSIT_S
            )
            for a, b in zip(views, views[1:], strict=False)
        ],
    )


def frame_ts_ns(frame_index: int, fps: float = SEQUENCE_FPS, t0_ns: int = T0_NS) -> int:
    """Capture time of a 0-based frame index."""
    return t0_ns + round(frame_index * NS_PER_S / fps)


# --- identity check -----------------------------------------------------------------------


def _id_crops(gt: np.ndarray, pets: Path, per_id: int) -> dict[int, list[np.ndarray]]:
    """Up to ``per_id`` crops per PETS id from the original video, spread over its frames."""
    want: dict[int, set[int]] = {}
    for pid in np.unique(gt[:, 1]).astype(int):
        frames = gt[gt[:, 1] == pid][:, 0].astype(int)
        pick = np.linspace(0, len(frames) - 1, min(per_id, len(frames))).round().astype(int)
        for f in frames[pick]:
            want.setdefault(int(f), set()).add(pid)
    crops: dict[int, list[np.ndarray]] = {}
    cap = cv2.VideoCapture(str(pets / "vtest.avi"))
    idx = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for pid in want.get(idx + 1, ()):
            r = gt[(gt[:, 0] == idx + 1) & (gt[:, 1] == pid)][0]
            x, y, w, h = r[2:6]
            x1, y1 = max(int(x), 0), max(int(y), 0)
            x2, y2 = min(int(x + w), SOURCE_W), min(int(y + h), SOURCE_H)
            if x2 - x1 > 4 and y2 - y1 > 8:
                crops.setdefault(pid, []).append(frame[y1:y2, x1:x2].copy())
        idx += 1
    cap.release()
    return crops


def identity_check(out: Path, pets: Path | None = None) -> dict:
    """OSNet distances between PETS ids and contact sheets of each merge group.

    For each merged id, reports the cosine distance of its mean vector to the
    id it is merged into, and the nearest and median distance to ids outside
    its merge group. Writes ``identity_check.json`` and
    ``contact_<global id>.png`` (one row of crops per PETS id in the group).
    """
    from detector.config import OnnxEmbedderConfig, RuntimeConfig
    from detector.embedder import build_embedder

    pets = pets or pets_dir()
    gt = load_pets_gt(pets / "gt.txt")
    crops = _id_crops(gt, pets, CHECK_CROPS_PER_ID)
    embedder = build_embedder(OnnxEmbedderConfig(), RuntimeConfig(), models_dir())
    means = {}
    for pid, cs in crops.items():
        v = embedder.embed(cs)
        m = v.mean(axis=0)
        means[pid] = l2_normalise(m)
    pids = sorted(means)
    mat = np.stack([means[p] for p in pids])
    dist = 1.0 - mat @ mat.T
    report: dict = {
        "method": "cosine distance between mean OSNet vectors of 12 crops per id; "
        "'other' = ids outside the merge group",
        "pairs": [],
    }
    for later, kept in sorted(PETS_SAME_PERSON.items()):
        i, j = pids.index(later), pids.index(kept)
        group = [k for k, p in enumerate(pids) if global_id_of(p) == global_id_of(later)]
        row = dist[i].copy()
        row[group] = np.inf
        nearest = int(np.argmin(row))
        others = row[np.isfinite(row)]
        report["pairs"].append(
            {
                "id": later,
                "merged_into": kept,
                "distance": round(float(dist[i, j]), 4),
                "nearest_other_id": int(pids[nearest]),
                "nearest_other_distance": round(float(row[nearest]), 4),
                "median_other_distance": round(float(np.median(others)), 4),
            }
        )
    groups: dict[str, list[int]] = {}
    for pid in pids:
        groups.setdefault(global_id_of(pid), []).append(pid)
    for gid, members in groups.items():
        if len(members) < 2:
            continue
        rows = []
        for pid in members:
            tiles = [cv2.resize(c, (48, 112)) for c in crops[pid][:CHECK_CROPS_PER_ID]]
            tiles += [np.zeros((112, 48, 3), np.uint8)] * (CHECK_CROPS_PER_ID - len(tiles))
            row = np.hstack(tiles)
            label = np.zeros((112, 60, 3), np.uint8)
            cv2.putText(label, str(pid), (4, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
            rows.append(np.hstack([label, row]))
        cv2.imwrite(str(out / f"contact_{gid}.png"), np.vstack(rows))
    (out / "identity_check.json").write_text(json.dumps(report, indent=1))
    return report


README_TEMPLATE = """# PETS09-S2L1 cut into {cameras} cameras

Built by `crosscam scenario pets --cameras {cameras} --out DIR` from PETS09-S2L1 view 1
(795 frames, 7 fps). Each camera is a vertical strip of the original view
({views}); strips are {gap_px} px apart, so nobody is in two cameras at once
and crossing a gap takes time (fastest walkers, the {pct:.0f}th percentile of
GT foot speed, {fast} px/s: at least {min_transit} s). Each camera has its
own exposure, gamma, white balance, blur and scale (`scenario.json`).{looks}

Files: `<cam>.{ext}` videos, `gt/<cam>.txt` per-camera MOT ground truth
(PETS ids, boxes clipped to the view, kept when ≥ {min_vis:.0%} visible),
`identities.json` (PETS id → global identity), `cameras.toml` (topology:
neighbouring strips linked, {min_transit}–{max_transit} s transit).

## Global identities

PETS ground truth gives a person who leaves the image and comes back a new id.
These ids are merged: {merges}.

How they were checked: `identity_check.json` gives, for each merged id, the
cosine distance between the mean OSNet x0.25 vectors (12 crops per id, from
the original video) of the id and the id it is merged into, and the nearest
and median distance to ids outside its group: every merged pair is closer
than any outside id. The
`contact_<global id>.png` sheets show 12 crops per PETS id, one row each; they
were looked at by eye (same clothes, build, bags) before the merge was kept.

{check_table}
"""


def write_readme(out: Path, meta: dict, check: dict | None) -> None:
    """The scenario's README.md, with the identity check table when there is one."""
    views = ", ".join(f"{v['camera_id']} x {v['x0']}–{v['x1']}" for v in meta["views"])
    merges = ", ".join(f"{a}→{b}" for a, b in sorted(PETS_SAME_PERSON.items()))
    table = ""
    if check:
        table = "| id | merged into | distance | nearest other (distance) | median other |\n"
        table += "| --- | --- | --- | --- | --- |\n"
        for p in check["pairs"]:
            table += (
                f"| {p['id']} | {p['merged_into']} | {p['distance']} | "
                f"{p['nearest_other_id']} ({p['nearest_other_distance']}) | {p['median_other_distance']} |\n"
            )
    cams = Path(out / "cameras.toml").read_text()
    link = next((ln for ln in cams.splitlines() if ln.startswith("max_transit_s")), "= ?")
    text = README_TEMPLATE.format(
        cameras=len(meta["views"]),
        views=views,
        gap_px=meta["gap_px"],
        pct=FAST_WALK_PERCENTILE,
        fast=meta["fast_walk_px_s"],
        min_transit=round(meta["gap_px"] / meta["fast_walk_px_s"], 2),
        max_transit=link.split("=")[1].strip(),
        ext="mp4" if (out / f"{meta['views'][0]['camera_id']}.mp4").exists() else "avi",
        min_vis=meta["min_visible_fraction"],
        merges=merges,
        check_table=table,
        looks=(
            " Degraded looks (`--look`): "
            + ", ".join(f"{c} {n}" for c, n in sorted(meta.get("looks", {}).items()))
            + "."
            if meta.get("looks")
            else ""
        ),
    )
    (out / "README.md").write_text(text)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cameras", type=int, default=3, choices=range(2, len(LOOKS) + 1), help="views to cut"
    )
    parser.add_argument("--out", type=Path, required=True, help="scenario folder to write")
    parser.add_argument(
        "--gap-px", "--gap", type=int, default=48, help="source pixels between views"
    )
    parser.add_argument(
        "--look",
        default="",
        help="degrade cameras' looks, e.g. cam1=grey,cam2=cast+noise "
        f"(known: {', '.join(sorted(DEGRADATIONS))})",
    )
    parser.add_argument(
        "--format", choices=("mp4", "avi"), default="mp4", help="H.264 mp4 (ffmpeg) or MJPG avi"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the OSNet identity check")


def main(args: argparse.Namespace) -> int:
    fmt = args.format if (args.format == "avi" or shutil.which("ffmpeg")) else "avi"
    try:
        looks = parse_looks(args.look)
        make_views(args.cameras, args.gap_px, looks)
    except ValueError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    meta = build_scenario(args.out, cameras=args.cameras, gap_px=args.gap_px, fmt=fmt, looks=looks)
    check = None if args.no_check else identity_check(args.out)
    write_readme(args.out, meta, check)
    print(json.dumps({"out": str(args.out), "frames": meta["frames"], "cameras": [v["camera_id"] for v in meta["views"]],
                      "identity_check": check["pairs"] if check else None}))  # fmt: skip
    return 0
