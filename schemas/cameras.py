"""The cameras file (TOML): every camera, where it is, its source, and which cameras connect.

A contract shared by the ReID stage (topology), the gallery (map), the runner
(one ingest per camera) and the tooling. Example::

    window_s = 120.0            # with no links: any camera within this window

    [[cameras]]
    id = "cam0"
    name = "west"
    source = "cam0.mp4"         # RTSP URL, or a video file relative to this file
    location = { x = 112.0, y = 288.0 }

    [[links]]                   # walking from cam0 to cam1 (either way)
    a = "cam0"
    b = "cam1"
    min_transit_s = 0.5
    max_transit_s = 30.0
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.messages import CAMERA_ID_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Location(_Strict):
    """Where a camera looks: map coordinates (any planar unit) or WGS84."""

    x: float | None = Field(default=None, description="map x (planar units)")
    y: float | None = Field(default=None, description="map y (planar units)")
    lat: float | None = Field(default=None, ge=-90, le=90, description="latitude, degrees")
    lon: float | None = Field(default=None, ge=-180, le=180, description="longitude, degrees")

    def point(self) -> tuple[float, float] | None:
        """(x, y), else (lon, lat), else None."""
        if self.x is not None and self.y is not None:
            return (self.x, self.y)
        if self.lat is not None and self.lon is not None:
            return (self.lon, self.lat)
        return None


class Camera(_Strict):
    """One camera of the network."""

    id: str = Field(
        pattern=CAMERA_ID_PATTERN,
        description="camera id, as in messages' camera_id: 1-64 of A-Z a-z 0-9 _ . - "
        "starting with a letter or digit",
    )
    name: str = Field(default="", description="human name")
    location: Location = Field(default_factory=Location)
    source: str = Field(
        default="", description="RTSP URL or video file (relative to the cameras file)"
    )


class Link(_Strict):
    """Cameras ``a`` and ``b`` connect (both ways) with this walking time between views."""

    a: str
    b: str
    min_transit_s: float = Field(
        default=0.0, ge=0, description="fastest walk from one view to the other"
    )
    max_transit_s: float = Field(
        default=60.0, gt=0, description="slowest walk still counted as a transit"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Link:
        if self.max_transit_s < self.min_transit_s:
            raise ValueError(f"link {self.a}-{self.b}: max_transit_s < min_transit_s")
        if self.a == self.b:
            raise ValueError(f"link {self.a}-{self.b} joins a camera to itself")
        return self


class CamerasFile(_Strict):
    """The cameras file's contents."""

    window_s: float = Field(
        default=120.0,
        gt=0,
        description="longest gap between two sightings that can be linked when no links say "
        "otherwise, and for re-entries on one camera; raising it links across longer absences "
        "and lets more wrong candidates compete",
    )
    cameras: list[Camera] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> CamerasFile:
        ids = [c.id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate camera id in cameras file")
        for link in self.links:
            for cam in (link.a, link.b):
                if cam not in ids:
                    raise ValueError(f"link names unknown camera {cam!r}")
        return self


def load_cameras_file(path: Path) -> CamerasFile:
    """Read and validate a cameras file."""
    with path.open("rb") as fh:
        return CamerasFile.model_validate(tomllib.load(fh))


def dump_cameras_toml(spec: CamerasFile) -> str:
    """A cameras file's TOML text (the inverse of :meth:`Topology.load`)."""

    def val(v: object) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(float(v)) if isinstance(v, float) else str(v)

    lines = [f"window_s = {val(spec.window_s)}", ""]
    for cam in spec.cameras:
        lines += ["[[cameras]]", f"id = {val(cam.id)}", f"name = {val(cam.name)}"]
        if cam.source:
            lines.append(f"source = {val(cam.source)}")
        loc = {k: v for k, v in cam.location.model_dump().items() if v is not None}
        if loc:
            lines.append(
                "location = { " + ", ".join(f"{k} = {val(v)}" for k, v in loc.items()) + " }"
            )
        lines.append("")
    for link in spec.links:
        lines += [
            "[[links]]",
            f"a = {val(link.a)}",
            f"b = {val(link.b)}",
            f"min_transit_s = {val(link.min_transit_s)}",
            f"max_transit_s = {val(link.max_transit_s)}",
            "",
        ]
    return "\n".join(lines)
