"""``crosscam deadletters list|replay`` against the real broker: a stage dead-letters a
record (a bug), the bug is fixed, replay re-publishes the original record, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.kafka_helpers import (
    committed,
    consume_all,
    create_topics,
    produce,
    run,
    unique,
    wait_for,
)
from tests.integration.test_loop_failures import _frame
from tests.integration.test_service_loop import REPO, _seqs, _start, _stop

pytestmark = pytest.mark.integration


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crosscam.cli", "deadletters", *args, "--bootstrap-servers", bootstrap],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip


def _listed(bootstrap: str, stage: str, *extra: str) -> list[dict]:
    res = _cli(bootstrap, "list", "--stage", stage, "--json", *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_list_then_replay_republishes_original_record_once(kafka_bootstrap: str) -> None:
    n, k = 5, 2
    stage = unique("dl-stage")
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    items = [_frame(i, "poison" if i == k else "cam") for i in range(n)]
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, items))
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0, extra=("--name", stage))
    try:
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == n, 60, "commit of all")
    finally:
        _stop(proc)
    wait_for(lambda: len(_listed(kafka_bootstrap, stage)) == 1, 30, "the dead letter to be listed")
    (row,) = _listed(kafka_bootstrap, stage)
    assert (row["topic"], row["offset"], row["key"], row["replay_done"]) == (t_in, k, "cam", False)
    assert "poison" in row["reason"]
    assert _listed(kafka_bootstrap, stage, "--since", "2099-01-01T00:00:00") == []
    assert len(_listed(kafka_bootstrap, stage, "--since", "1h")) == 1
    text = _cli(kafka_bootstrap, "list", "--stage", stage)
    assert text.returncode == 0 and f"{t_in}[0]@{k}" in text.stdout, text

    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0, extra=("--name", stage, "--fixed"))
    try:
        first = _cli(kafka_bootstrap, "replay", "--stage", stage)
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert [(r["topic"], r["offset"]) for r in report["replayed"]] == [(t_in, k)]
        again = json.loads(_cli(kafka_bootstrap, "replay", "--stage", stage).stdout)
        assert again["replayed"] == [] and again["skipped"] == []  # idempotent
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == n + 1, 60, "the replay")
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= n, timeout_s=30))
    finally:
        _stop(proc)
    assert sorted(_seqs(out)) == list(range(n))  # the dead-lettered record made it after the fix
    replayed = run(consume_all(kafka_bootstrap, t_in, lambda rs: len(rs) > n, timeout_s=30))
    assert [(r.key, r.value) for r in replayed[n:]] == [items[k]]  # original bytes, key kept
    assert [r["replay_done"] for r in _listed(kafka_bootstrap, stage)] == [True]
