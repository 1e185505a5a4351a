"""The shared consume loop against the real broker, in a real process:
dead letters, SIGTERM in the middle of a batch, SIGKILL in the middle of a batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import DeadLetter, Frame, decode, encode
from schemas.topics import DEADLETTER
from tests.integration.kafka_helpers import (
    committed,
    consume_all,
    create_topics,
    produce,
    run,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _frames(n: int, camera: str = "cam") -> list[tuple[bytes, bytes]]:
    return [
        (camera.encode(), encode(Frame(camera_id=camera, seq=i, ts_capture_ns=10**18 + i)))
        for i in range(n)
    ]


def _start(
    bootstrap: str,
    t_in: str,
    t_out: str,
    group: str,
    delay: float,
    batch: int = 8,
    batch_wait_ms: int = 0,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.loop_stage",
            "--in",
            t_in,
            "--out",
            t_out,
            "--group",
            group,
            "--bootstrap",
            bootstrap,
            "--delay",
            str(delay),
            "--batch",
            str(batch),
            "--batch-wait-ms",
            str(batch_wait_ms),
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


_LOGS: dict[int, list[str]] = {}


def _follow(proc: subprocess.Popen[str]) -> None:
    """Collect the process's output in a thread, so a test can look at it while it runs."""
    import threading

    lines = _LOGS.setdefault(proc.pid, [])
    assert proc.stdout is not None
    threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True
    ).start()


def _peek(proc: subprocess.Popen[str]) -> str:
    return "".join(_LOGS.get(proc.pid, []))


def _seqs(records: list) -> list[int]:
    return [decode(Frame, r.value).seq for r in records]


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    proc.send_signal(sig)
    if proc.pid not in _LOGS:
        out, _ = proc.communicate(timeout=timeout)
        return out
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "stage_stopped" not in _peek(proc):
        time.sleep(0.05)
    return "".join(_LOGS.pop(proc.pid, []))


def test_malformed_message_is_dead_lettered_and_the_next_one_processed(
    kafka_bootstrap: str,
) -> None:
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    garbage = b"\x00not msgpack at all"
    items = [
        (b"cam", garbage),
        *_frames(1),
        (b"reject", encode(Frame(camera_id="reject", seq=9, ts_capture_ns=1))),
        *_frames(2)[1:],
    ]
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, items))
    proc = _start(kafka_bootstrap, t_in, t_out, group, delay=0.0)
    try:
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= 2, timeout_s=60))
        assert sorted(_seqs(out)) == [0, 1]
        dls = run(
            consume_all(
                kafka_bootstrap,
                DEADLETTER.name,
                lambda rs: sum(decode(DeadLetter, r.value).topic == t_in for r in rs) >= 2,
                timeout_s=30,
            )
        )
        mine = [
            decode(DeadLetter, r.value) for r in dls if decode(DeadLetter, r.value).topic == t_in
        ]
        assert len(mine) == 2
        broken = next(d for d in mine if d.offset == 0)
        assert (
            broken.value == garbage
            and "invalid Frame" in broken.reason
            and broken.stage == "loop-test"
        )
        rejected = next((d for d in mine if d.offset == 2), None)
        assert rejected is not None, mine
        assert "rejected by test stage" in rejected.reason
        wait_for(
            lambda: run(committed(kafka_bootstrap, group, t_in)) == 4,
            30,
            "commit past all 4 records",
        )
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_sigterm_mid_batch_commits_only_what_was_produced_and_restart_loses_nothing(
    kafka_bootstrap: str,
) -> None:
    n = 40
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, _frames(n)))
    proc = _start(kafka_bootstrap, t_in, t_out, group, delay=0.15)  # a batch of 8 takes 1.2 s
    run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= 8, timeout_s=60))
    log = _stop(proc)
    assert proc.returncode == 0, log
    assert "stage_stopped" in log
    produced = _seqs(run(consume_all(kafka_bootstrap, t_out, lambda rs: False, timeout_s=3)))
    offset = run(committed(kafka_bootstrap, group, t_in))
    assert offset is not None and 8 <= offset < n
    # The in-flight batch was finished: everything committed was produced, once.
    assert sorted(produced) == list(range(offset))
    proc = _start(kafka_bootstrap, t_in, t_out, group, delay=0.0)
    try:
        out = run(
            consume_all(kafka_bootstrap, t_out, lambda rs: len(set(_seqs(rs))) >= n, timeout_s=60)
        )
        assert sorted(set(_seqs(out))) == list(range(n))
        assert len(out) == n  # a clean stop repeats nothing
    finally:
        _stop(proc)


def test_sigkill_mid_batch_never_commits_unproduced_work(kafka_bootstrap: str) -> None:
    n = 40
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, _frames(n)))
    proc = _start(kafka_bootstrap, t_in, t_out, group, delay=0.15)
    run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= 8, timeout_s=60))
    _stop(proc, signal.SIGKILL)
    produced = set(_seqs(run(consume_all(kafka_bootstrap, t_out, lambda rs: False, timeout_s=3))))
    offset = run(committed(kafka_bootstrap, group, t_in)) or 0
    assert offset < n
    assert set(range(offset)) <= produced  # nothing committed that was not produced
    proc = _start(kafka_bootstrap, t_in, t_out, group, delay=0.0)
    try:
        out = run(
            consume_all(
                kafka_bootstrap, t_out, lambda rs: set(_seqs(rs)) >= set(range(n)), timeout_s=60
            )
        )
        assert set(_seqs(out)) == set(range(n))  # at-least-once: repeats allowed, losses not
    finally:
        _stop(proc)


def test_batch_fills_up_to_n_records_or_t_milliseconds(kafka_bootstrap: str) -> None:
    """Frames trickling in from several cameras are handled as one batch (GPU batching)."""
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in, t_out))
    proc = _start(kafka_bootstrap, t_in, t_out, group, delay=0.0, batch=6, batch_wait_ms=3000)
    _follow(proc)
    try:
        # The stage is up once it has committed nothing yet but joined: produce in two
        # bursts 0.5 s apart; with a 3 s wait they land in one batch of 6.
        wait_for(lambda: "stage_started" in _peek(proc), 60, "the stage to start")
        run(produce(kafka_bootstrap, t_in, _frames(3)))
        time.sleep(0.5)  # the gap the batch must bridge (the thing under test, not a wait)
        run(produce(kafka_bootstrap, t_in, [(k, v) for k, v in _frames(6)[3:]]))
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= 6, timeout_s=60))
        assert sorted(_seqs(out)) == list(range(6))
    finally:
        log = _stop(proc)
    assert "batch records=6" in log, log
