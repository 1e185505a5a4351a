"""`crosscam bench pipeline`: the capacity figure and who stops the stack."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import pipeline


def test_frames_per_core_divides_by_the_cores_kept_busy() -> None:
    # 600 frames in 60 s with 1.5 cores busy: 10 fps / 1.5 cores
    assert pipeline._per_core(600, {"ingest": 30.0, "detector": 60.0}, 60.0) == 6.67
    assert pipeline._per_core(0, {"detector": 60.0}, 60.0) is None
    assert pipeline._per_core(600, {}, 60.0) is None


@pytest.mark.parametrize(
    ("before", "stopped"), [("down", True), ("up", False)], ids=["ours", "someone-elses"]
)
def test_stops_only_a_stack_it_started(
    monkeypatch: pytest.MonkeyPatch, before: str, stopped: bool
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        pipeline.stack, "status", lambda: dict.fromkeys(pipeline.stack.SERVICES, before)
    )
    monkeypatch.setattr(pipeline.stack, "up", lambda: calls.append("up"))
    monkeypatch.setattr(pipeline.stack, "down", lambda: calls.append("down"))

    def measure(_args: Any) -> dict[str, Any]:
        raise RuntimeError("the run failed")

    monkeypatch.setattr(pipeline, "_measure", measure)
    with pytest.raises(RuntimeError, match="the run failed"):
        pipeline.run_bench(argparse.Namespace(stack=True))
    assert calls == (["up", "down"] if stopped else ["up"])
