"""Camera topology: the cameras file (TOML) and the transit times it allows.

A cameras file names every camera, where it is (map ``x``/``y`` or
``lat``/``lon``), optionally its ``source`` (RTSP URL or a video file,
relative to the file's folder or absolute; the whole-pipeline runner starts
ingest from it), and optionally which cameras connect::

    window_s = 120.0            # with no links: any camera within this window

    [[cameras]]
    id = "cam0"
    name = "west"
    source = "cam0.mp4"
    location = { x = 112.0, y = 288.0 }

    [[links]]                   # walking from cam0 to cam1 (either way)
    a = "cam0"
    b = "cam1"
    min_transit_s = 0.5
    max_transit_s = 30.0

With links, two cameras not linked directly are reachable along paths of
links; their transit bounds are the sums along the path (the smallest minimum,
the largest maximum over paths of at most :data:`MAX_PATH_HOPS` links).
Cameras with no path between them are never linked. With no links at all, any
two cameras may be linked within ``window_s``. Transit time is from the end of
one sighting to the start of the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from schemas.cameras import Camera, CamerasFile, load_cameras_file

MAX_PATH_HOPS = 4
"""Longest chain of links considered between two cameras: a camera network's
neighbourhoods are small, and enumerating longer simple paths grows fast."""


class Topology:
    """Which camera pairs can hold the same person, and after how long.

    ``Topology.open_world(window_s)`` is the no-topology default: any two
    cameras, any gap up to ``window_s``.
    """

    def __init__(self, spec: CamerasFile, base_dir: Path | None = None) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.window_s = spec.window_s
        self.cameras: dict[str, Camera] = {c.id: c for c in spec.cameras}
        self._bounds: dict[tuple[str, str], tuple[float, float]] = {}
        if spec.links:
            self._compute_paths()

    @classmethod
    def open_world(cls, window_s: float = 120.0, cameras: Iterable[Camera] = ()) -> Topology:
        """No links: any camera within ``window_s``."""
        return cls(CamerasFile(window_s=window_s, cameras=list(cameras)))

    @classmethod
    def load(cls, path: Path) -> Topology:
        """Read and validate a cameras file."""
        return cls(load_cameras_file(path), base_dir=path.resolve().parent)

    def without_links(self) -> Topology:
        """The same cameras with the links dropped (for measuring what topology adds)."""
        return Topology(
            CamerasFile(window_s=self.window_s, cameras=list(self.spec.cameras)), self.base_dir
        )

    @property
    def has_links(self) -> bool:
        """True when the cameras file lists camera links (walking times)."""
        return bool(self.spec.links)

    def source_path(self, camera_id: str) -> str:
        """The camera's source: a URL as is, a relative file resolved against the cameras file."""
        src = self.cameras[camera_id].source
        if not src or "://" in src or self.base_dir is None or Path(src).is_absolute():
            return src
        return str((self.base_dir / src).resolve())

    def _compute_paths(self) -> None:
        adj: dict[str, list[tuple[str, float, float]]] = {}
        for link in self.spec.links:
            adj.setdefault(link.a, []).append((link.b, link.min_transit_s, link.max_transit_s))
            adj.setdefault(link.b, []).append((link.a, link.min_transit_s, link.max_transit_s))

        def walk(start: str, node: str, seen: tuple[str, ...], lo: float, hi: float) -> None:
            if node != start:
                key = (start, node)
                old = self._bounds.get(key)
                self._bounds[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            if len(seen) > MAX_PATH_HOPS:
                return
            for nxt, mn, mx in adj.get(node, []):
                if nxt not in seen:
                    walk(start, nxt, (*seen, nxt), lo + mn, hi + mx)

        for cam in adj:
            walk(cam, cam, (cam,), 0.0, 0.0)

    def transit_bounds(self, camera_a: str, camera_b: str) -> tuple[float, float] | None:
        """(min, max) seconds from leaving ``camera_a`` to appearing on ``camera_b``.

        Same camera: a re-entry, ``(0, window_s)``. Returns None when the
        topology has links and no path joins the two cameras.
        """
        if camera_a == camera_b or not self.has_links:
            return (0.0, self.window_s)
        return self._bounds.get((camera_a, camera_b))

    def reachable(self, camera_id: str) -> set[str] | None:
        """Cameras a person on ``camera_id`` can reach (itself included); None (any) with no links."""
        if not self.has_links:
            return None
        return {b for (a, b) in self._bounds if a == camera_id} | {camera_id}

    def max_gap_s(self) -> float:
        """Longest transit any pair allows (the linker's search window)."""
        his = [hi for _, hi in self._bounds.values()]
        return max([self.window_s, *his])

    def cameras_in_area(self, x_min: float, y_min: float, x_max: float, y_max: float) -> set[str]:
        """Cameras whose location lies in the box (map x/y, or lon/lat)."""
        out = set()
        for cam in self.cameras.values():
            p = cam.location.point()
            if p is not None and x_min <= p[0] <= x_max and y_min <= p[1] <= y_max:
                out.add(cam.id)
        return out
