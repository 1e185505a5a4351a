"""`crosscam bench linker`: the synthetic site and the report (no speed is asserted)."""

from __future__ import annotations

import argparse
import json

import pytest

from bench import linker as bench_linker


def test_site_walks_people_along_the_corridor_in_end_order() -> None:
    run = bench_linker.sightings(120, cameras=6, arrival_s=2.0, seed=1)
    assert len(run) == 120
    assert [s.ts_end_ns for s in run] == sorted(s.ts_end_ns for s in run)
    assert {s.camera_id for s in run} <= {f"cam{k}" for k in range(6)}
    assert len({s.camera_id for s in run}) > 3
    assert bench_linker.sightings(120, 6, 2.0, 1)[5].tracklet_id == run[5].tracklet_id  # seeded


def test_report_times_both_settings_and_links_people(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench_linker.configure(parser)
    assert (
        bench_linker.main(parser.parse_args(["--at", "30", "60", "--cameras", "4", "--json"])) == 0
    )
    report = json.loads(capsys.readouterr().out)
    for setting in ("refine_on", "refine_off"):
        assert set(report[setting]["ms_per_tracklet_at_live"]) == {"30", "60"}
        # people seen on several cameras were linked: fewer identities than tracklets
        assert 0 < report[setting]["identities"] < report["tracklets"] == 60
    assert len(report["load_average"]["start"]) == 3
