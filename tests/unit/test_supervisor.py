"""The process supervisor with real child processes (no Kafka needed)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from crosscam.supervisor import ProcessSpec, Supervisor


def test_restart_backoff_doubles_with_jitter_and_is_capped(tmp_path: Path) -> None:
    spec = ProcessSpec("x", [sys.executable, "-c", "pass"])
    sup = Supervisor([spec], tmp_path, backoff_initial_s=1.0, backoff_max_s=10.0, seed=1)
    backoff = sup.children["x"].backoff
    delays = [backoff.next_delay_s() for _ in range(8)]
    assert 0.75 <= delays[0] <= 1.25
    assert delays[2] > delays[0]
    assert max(delays) <= 10.0 and delays[-1] >= 7.5


def test_crashing_child_is_restarted_and_steady_child_kept(tmp_path: Path) -> None:
    crash = ProcessSpec("crash", [sys.executable, "-c", "import sys; sys.exit(3)"])
    steady = ProcessSpec("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    sup = Supervisor([crash, steady], tmp_path, backoff_initial_s=0.05, backoff_max_s=0.2)
    stop = threading.Event()
    t = threading.Thread(target=sup.run, args=(stop, 0.02))
    t.start()
    deadline = time.monotonic() + 20
    while sup.restarts()["crash"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    steady_pid = sup.pids()["steady"]
    stop.set()
    t.join(30)
    assert sup.restarts()["crash"] >= 3
    assert sup.restarts()["steady"] == 0 and steady_pid is not None


def test_stop_sends_sigterm_then_kills_after_grace(tmp_path: Path) -> None:
    polite = ProcessSpec("polite", [sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = ProcessSpec(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); time.sleep(60)",
        ],
    )
    sup = Supervisor([polite, stubborn], tmp_path, grace_s=1.0)
    sup.start()
    deadline = time.monotonic() + 10
    while b"ok" not in (tmp_path / "stubborn.log").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    codes = sup.stop()
    assert codes["polite"] == -15  # SIGTERM
    assert codes["stubborn"] == -9  # ignored SIGTERM, killed after the grace period
    sup.poll()
    assert sup.pids() == {"polite": None, "stubborn": None}  # stopped children stay stopped


def test_children_die_with_the_supervisor(tmp_path: Path) -> None:
    """Regression: a demo killed with SIGKILL left every stage running on its own."""
    import os
    import signal
    import subprocess

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from crosscam.supervisor import ProcessSpec, Supervisor\n"
        f"sup = Supervisor([ProcessSpec('c', [sys.executable, '-c', 'import time; time.sleep(60)'])], Path({str(tmp_path)!r}))\n"
        "sup.start()\n"
        "print(sup.pids()['c'], flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        raise AssertionError("child outlived its supervisor")


def test_a_child_that_finishes_is_not_restarted(tmp_path: Path) -> None:
    """Regression: `crosscam run` over file cameras re-ingested each file every few
    seconds, because a finished ingest (exit 0) was restarted like a crash."""
    done = ProcessSpec("done", [sys.executable, "-c", "print('finished')"])
    sup = Supervisor([done], tmp_path, backoff_initial_s=0.01, backoff_max_s=0.02)
    stop = threading.Event()
    t = threading.Thread(target=sup.run, args=(stop, 0.02))
    t.start()
    time.sleep(1.0)  # many poll periods: a restart would have happened by now
    stop.set()
    t.join(10)
    assert sup.restarts()["done"] == 0
    assert (tmp_path / "done.log").read_text().count("finished") == 1
