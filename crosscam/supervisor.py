"""Supervised child processes: restart with backoff, clean stop on SIGTERM.

A child that exits 0 has finished (an ingest at the end of a file) and stays
stopped; one that crashes (non-zero or killed) is restarted.

Pure process management (no Kafka): the runner (``crosscam run``) builds one
:class:`ProcessSpec` per ingest camera and per stage replica and hands them
here. A child that exits is restarted after an exponential backoff with
jitter; the backoff resets once a child has stayed up for
``stable_after_s``. Stopping sends SIGTERM to every child (each stage
finishes its batch, commits and exits), waits ``grace_s``, then SIGKILLs
whatever is left.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass
class ProcessSpec:
    """One supervised process: its name (unique), argv and extra environment."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = 0


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start_at: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    log_file: object = None
    enabled: bool = True


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies (Linux), so a
    crashed or killed supervisor never leaves stages running on their own."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not Linux: nothing to do
        pass


SUPERVISOR_JITTER = 0.25
"""Random spread (±) of each restart delay, so children that crashed together do not
restart in the same instant."""


class Supervisor:
    """Keeps a set of processes running until :meth:`stop`."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        log_dir: Path,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        stable_after_s: float = 30.0,
        grace_s: float = 20.0,
        seed: int = 0,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate process names: {names}")
        self.log_dir = log_dir
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.grace_s = grace_s
        self._rng = random.Random(seed)
        self.children = {
            s.name: _Child(
                s, backoff=Backoff(backoff_initial_s, backoff_max_s, SUPERVISOR_JITTER, self._rng)
            )
            for s in specs
        }
        self._lock = threading.Lock()
        self._stopping = False

    def _spawn(self, child: _Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.log_dir / f"{child.spec.name}.log", "ab")  # noqa: SIM115 - owned by the child record
        env = {**os.environ, **child.spec.env, "PYTHONUNBUFFERED": "1"}
        child.proc = subprocess.Popen(
            child.spec.argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.log_file = fh
        child.started_at = time.monotonic()
        log.info(
            "process_started",
            extra={"child": child.spec.name, "pid": child.proc.pid, "restarts": child.restarts},
        )

    def start(self) -> None:
        for child in self.children.values():
            self._spawn(child)

    def poll(self) -> None:
        """Restart children that exited, honouring their backoff. Call periodically."""
        now = time.monotonic()
        with self._lock:
            if self._stopping:
                return
            for child in self.children.values():
                proc = child.proc
                if not child.enabled:
                    continue
                if proc is not None and proc.poll() is None:
                    if now - child.started_at > self.stable_after_s:
                        child.backoff.reset()
                    continue
                if proc is not None:
                    code = proc.returncode
                    child.proc = None
                    if code == 0:
                        # Finished its work (an ingest that read a whole file):
                        # restarting it would replay the file as new frames.
                        child.enabled = False
                        log.info("process_finished", extra={"child": child.spec.name})
                        continue
                    delay_s = child.backoff.next_delay_s()
                    child.next_start_at = now + delay_s
                    log.warning(
                        "process_exited",
                        extra={
                            "child": child.spec.name,
                            "code": code,
                            "restart_in_s": round(delay_s, 2),
                        },
                    )
                if now >= child.next_start_at:
                    child.restarts += 1
                    self._spawn(child)

    def add(self, spec: ProcessSpec) -> None:
        """Start supervising one more process (a camera added at runtime)."""
        with self._lock:
            if self._stopping:
                return
            if spec.name in self.children:
                raise ValueError(f"duplicate process name: {spec.name}")
            child = _Child(spec, backoff=Backoff(self.backoff_initial_s, self.backoff_max_s,
                                                 SUPERVISOR_JITTER, self._rng))  # fmt: skip
            self.children[spec.name] = child
            self._spawn(child)

    def remove(self, name: str) -> int | None:
        """Stop one process (SIGTERM, then SIGKILL after ``grace_s``) and forget it."""
        code = self.stop([name]).get(name)
        with self._lock:
            self.children.pop(name, None)
        return code

    def run(self, stop: threading.Event, period_s: float = 0.25) -> None:
        """Supervise until ``stop`` is set, then stop every child."""
        self.start()
        while not stop.wait(period_s):
            self.poll()
        self.stop()

    def pids(self) -> dict[str, int | None]:
        return {
            n: (c.proc.pid if c.proc and c.proc.poll() is None else None)
            for n, c in self.children.items()
        }

    def restarts(self) -> dict[str, int]:
        return {n: c.restarts for n, c in self.children.items()}

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to one child (fault tests: SIGKILL a replica)."""
        proc = self.children[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def stop(self, names: list[str] | None = None) -> dict[str, int | None]:
        """SIGTERM, wait ``grace_s``, SIGKILL the rest; returns exit codes.

        With ``names``, only those children stop (and are not restarted).
        """
        with self._lock:
            if names is None:
                self._stopping = True
            chosen = [self.children[n] for n in (names or list(self.children))]
            for child in chosen:
                child.enabled = False
        for child in chosen:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        codes: dict[str, int | None] = {}
        for child in chosen:
            if child.proc is None:
                codes[child.spec.name] = None
                continue
            try:
                codes[child.spec.name] = child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "process_killed", extra={"child": child.spec.name, "after_s": self.grace_s}
                )
                child.proc.kill()
                codes[child.spec.name] = child.proc.wait()
            if child.log_file is not None:
                child.log_file.close()  # type: ignore[attr-defined]
        return codes
