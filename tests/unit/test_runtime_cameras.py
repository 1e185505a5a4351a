"""``crosscam run --runtime-cameras``: the ReID stage follows the registry, the gallery draws the
ReID API's cameras, and ingest is left to the reconciler (no ingest spec from the file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from crosscam.run import STAGES, build_specs, configure, runtime_cameras_mode
from schemas.cameras import Camera, CamerasFile, Location, dump_cameras_toml


def _cameras_file(tmp_path: Path) -> Path:
    video = tmp_path / "a.avi"
    video.write_bytes(b"x")
    spec = CamerasFile(cameras=[Camera(id="a", source="a.avi", location=Location(x=0, y=0))])
    path = tmp_path / "site.toml"
    path.write_text(dump_cameras_toml(spec))
    return path


def test_runtime_cameras_mode_changes_only_what_it_must(tmp_path: Path) -> None:
    cameras = _cameras_file(tmp_path)
    fixed = build_specs(cameras)
    assert "ingest-a" in [s.name for s in fixed]
    specs = build_specs(cameras, set(STAGES) - {"ingest"})
    runtime_cameras_mode(specs)
    by_name = {s.name: s for s in specs}
    assert not any(n.startswith("ingest-") for n in by_name)
    assert by_name["reid"].env["CROSSCAM_REID__CAMERA_REGISTRY"] == "true"
    assert "--cameras" in by_name["reid"].argv  # the seed for the registry
    assert "--cameras" not in by_name["gallery"].argv  # the map comes from the ReID API
    assert {s.name for s in fixed} - {"ingest-a"} == set(by_name)


def test_the_flag_parses() -> None:
    parser = argparse.ArgumentParser()
    configure(parser)
    assert parser.parse_args(["--cameras", "x.toml", "--runtime-cameras"]).runtime_cameras
    assert not parser.parse_args(["--cameras", "x.toml"]).runtime_cameras
