"""The local stack: a real Kafka (KRaft), Redis and RTSP server, started by us.

Why this exists: the pipeline is only honest when it runs against real
servers, but a developer machine or CI runner has no Docker. So the project
starts them itself, from Apache Kafka's own jars (resolved by Maven from
``deploy/kafka/pom.xml``), Debian's ``redis-server`` and a small GStreamer RTSP
server (``devstack/rtsp_server.py``), all bound to 127.0.0.1 on non-default
ports so they never clash with system services.

Every process is started in its own session with a pid file in the state dir
(``$CROSSCAM_STACK_DIR``, default ``<repo>/.stack``). Stopping checks that the
pid's command line still names *our* state dir before it signals anything, so
a recycled pid or someone else's server is never killed. Data survives
restarts (Kafka's log dir is formatted once); ``down`` stops processes only.

Readiness is always asked of the server itself (Kafka metadata, Redis PING,
RTSP OPTIONS/DESCRIBE) under a deadline; a process that dies while starting
is reported with the tail of its log.

This module is plain functions and classes; the CLI is ``devstack.cli``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
KAFKA_DEPLOY_DIR = DEPLOY_DIR / "kafka"
RTSP_SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
PROMETHEUS_CONFIG = DEPLOY_DIR / "prometheus" / "prometheus.yml"
# The RTSP server needs GStreamer's ``gi`` bindings, which only the system Python has.
SYSTEM_PYTHON = "/usr/bin/python3"

SERVICES: tuple[str, ...] = ("kafka", "redis", "rtsp")
HOST = "127.0.0.1"

# Deadlines. Kafka's JVM start plus KRaft election takes ~5-10 s on 2 cores;
# the margins are for a loaded CI machine, not for the normal case.
KAFKA_START_TIMEOUT_S = 90.0
KAFKA_STOP_TIMEOUT_S = 60.0
KAFKA_RESOLVE_TIMEOUT_S = 600.0
REDIS_START_TIMEOUT_S = 20.0
RTSP_START_TIMEOUT_S = 20.0
RTSP_PUBLISH_TIMEOUT_S = 20.0
RTSP_KEY_INT = 10
"""Keyframe interval (frames) of pre-encoded cameras: as the live-encoding server's."""
ENCODE_TIMEOUT_S = 600.0
"""Longest one-off ffmpeg encode of a camera file (PETS09, 795 frames: seconds)."""
STOP_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.1

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
T = TypeVar("T")


class StackError(RuntimeError):
    """A service of the local stack could not be started, probed or stopped."""

    def __init__(self, service: str, message: str, log_tail: str = "") -> None:
        self.service = service
        self.message = message
        self.log_tail = log_tail
        text = f"{service}: {message}"
        if log_tail:
            text += f"\n--- last lines of the {service} log ---\n{log_tail}"
        super().__init__(text)


def _env_int(env: dict[str, str], name: str, default: int, low: int = 1, high: int = 65535) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside [{low}, {high}]")
    return value


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack lives and listens. Build it with :meth:`from_env`."""

    state_dir: Path = field(default_factory=lambda: REPO_ROOT / ".stack")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    redis_port: int = 16379
    rtsp_port: int = 18554
    prometheus_port: int = 19090
    kafka_heap_mb: int = 512
    host: str = HOST
    # A SASL/SCRAM listener beside the plaintext one (None: none), and its user.
    kafka_sasl_port: int | None = None
    kafka_sasl_tls_port: int | None = None  # the same SCRAM login over TLS (SASL_SSL)
    kafka_sasl_user: str = "crosscam"
    kafka_sasl_password: str = field(default="crosscam-local-only", repr=False)
    # Resolved broker jars; None means <state_dir>/kafka/libs. A private stack
    # (tests) points it at the main stack's cache to skip resolving again.
    kafka_libs_override: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackConfig:
        """Read ``CROSSCAM_STACK_DIR`` and ``CROSSCAM_{KAFKA,REDIS,RTSP}_PORT``.

        Also ``CROSSCAM_KAFKA_CONTROLLER_PORT`` (default: Kafka port + 1),
        ``CROSSCAM_PROMETHEUS_PORT``, ``CROSSCAM_KAFKA_HEAP_MB``,
        ``CROSSCAM_KAFKA_LIBS`` (a folder to cache the broker's jars in) and
        ``CROSSCAM_KAFKA_SASL_PORT`` / ``_SASL_TLS_PORT`` / ``_SASL_USER`` / ``_SASL_PASSWORD``
        (SCRAM listeners, plain and over TLS).
        """
        env = dict(os.environ if env is None else env)
        state = env.get("CROSSCAM_STACK_DIR") or str(REPO_ROOT / ".stack")
        kafka_port = _env_int(env, "CROSSCAM_KAFKA_PORT", 19092)
        return cls(
            state_dir=Path(state).expanduser().resolve(),
            kafka_port=kafka_port,
            kafka_controller_port=_env_int(env, "CROSSCAM_KAFKA_CONTROLLER_PORT", kafka_port + 1),
            redis_port=_env_int(env, "CROSSCAM_REDIS_PORT", 16379),
            rtsp_port=_env_int(env, "CROSSCAM_RTSP_PORT", 18554),
            prometheus_port=_env_int(env, "CROSSCAM_PROMETHEUS_PORT", 19090),
            kafka_heap_mb=_env_int(env, "CROSSCAM_KAFKA_HEAP_MB", 512, low=128, high=16384),
            kafka_sasl_port=_env_int(env, "CROSSCAM_KAFKA_SASL_PORT", 0, low=0) or None,
            kafka_sasl_tls_port=_env_int(env, "CROSSCAM_KAFKA_SASL_TLS_PORT", 0, low=0) or None,
            kafka_sasl_user=env.get("CROSSCAM_KAFKA_SASL_USER") or "crosscam",
            kafka_sasl_password=env.get("CROSSCAM_KAFKA_SASL_PASSWORD") or "crosscam-local-only",
            kafka_libs_override=Path(env["CROSSCAM_KAFKA_LIBS"]).resolve()
            if env.get("CROSSCAM_KAFKA_LIBS")
            else None,
        )

    @property
    def kafka_libs_dir(self) -> Path:
        return self.kafka_libs_override or self.kafka_dir / "libs"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def rtsp_dir(self) -> Path:
        return self.state_dir / "rtsp"

    @property
    def prometheus_dir(self) -> Path:
        return self.state_dir / "prometheus"


# ---------------------------------------------------------------------------
# process bookkeeping
# ---------------------------------------------------------------------------

# Popen objects of the servers this Python process started, by pid, so that
# stopping one reaps it (no zombie lingering in /proc while tests run).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


PID_RECHECK_S = 0.5
"""How long a pid file's process may show an unreadable command line (mid-execve)
before the pid file counts as stale."""


def _read_cmdline(pid: int) -> list[str] | None:
    """The pid's argv, or None if no such live process (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # state is the field after the ")" closing the command name
        if stat[stat.rindex(")") + 2] in "ZX":
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


@dataclass(frozen=True)
class ManagedProcess:
    """A server process known by its pid file and a marker in its command line.

    ``markers`` are strings that must all appear in the process's argv (e.g.
    the path of its config file inside our state dir): the proof that a pid
    read from a stale pid file is still the process we started.
    """

    name: str
    pid_file: Path
    log_file: Path
    markers: tuple[str, ...]

    def pid(self) -> int | None:
        """The pid if the process is alive and ours.

        A stale pid file is removed. A missing one (lost in a race between
        two starters, or deleted by hand) is recovered by scanning /proc for
        a process whose command line carries our markers, so ``down`` can
        still stop it.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            pid = None
        if pid is not None and self._is_ours(pid):
            return pid
        if (
            pid is not None
            and Path(f"/proc/{pid}").exists()
            and _wait_until(lambda: self._is_ours(pid), PID_RECHECK_S)
        ):
            return pid  # its command line was unreadable for a moment (execve)
        if pid is not None:
            self._reap(pid)
            self.pid_file.unlink(missing_ok=True)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._is_ours(int(entry.name)):
                self._write_pid(int(entry.name))
                log.warning(
                    "recovered service=%s pid=%s (pid file was missing)", self.name, entry.name
                )
                return int(entry.name)
        return None

    def _is_ours(self, pid: int) -> bool:
        argv = _read_cmdline(pid)
        return argv is not None and all(any(m in a for a in argv) for m in self.markers)

    def _write_pid(self, pid: int) -> None:
        tmp = self.pid_file.with_suffix(f".pid.tmp.{os.getpid()}")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_file)

    @contextlib.contextmanager
    def start_lock(self) -> Iterator[None]:
        """Serialise starting this service across processes (two test sessions,
        a CLI and a fixture): the second starter waits and then finds it running."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pid_file.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def alive(self) -> bool:
        return self.pid() is not None

    def spawn(
        self, argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> int:
        """Start argv in its own session (so Ctrl-C in the caller leaves it alone)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        with _children_lock:
            _children[proc.pid] = proc
        self._write_pid(proc.pid)
        log.info("started service=%s pid=%d log=%s", self.name, proc.pid, self.log_file)
        return proc.pid

    def exited(self, pid: int) -> bool:
        """True once pid is gone (reaping it if it is our child).

        For our own child the exit status decides, not /proc: a process in the
        middle of an execve (the java launcher re-executes itself) shows an
        empty command line for a moment, which once made a healthy broker look
        dead ("exited while starting ... exit status unknown").
        """
        with _children_lock:
            child = _children.get(pid)
        if child is not None:
            return child.poll() is not None
        return _read_cmdline(pid) is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> bool:
        """Signal the process, wait for it to exit, SIGKILL after timeout_s.

        Returns True if a process of ours was running.
        """
        pid = self.pid()
        if pid is None:
            return False
        log.info("stopping service=%s pid=%d signal=%s", self.name, pid, signal.Signals(sig).name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a paused (SIGSTOPped) process cannot handle SIGTERM
            os.kill(pid, sig)
        if not _wait_until(lambda: self.exited(pid), timeout_s):
            log.warning(
                "service=%s pid=%d ignored %s for %.0f s; killing",
                self.name,
                pid,
                signal.Signals(sig).name,
                timeout_s,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_until(lambda: self.exited(pid), 10.0)
        self.forget(pid)
        return True

    def forget(self, pid: int) -> None:
        """Remove the pid file if it still names pid (not a newer start's)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(self.pid_file.read_text().strip()) == pid:
                self.pid_file.unlink(missing_ok=True)

    def kill(self) -> bool:
        """SIGKILL at once, for crash tests."""
        return self.stop(timeout_s=10.0, sig=signal.SIGKILL)

    def signal(self, sig: int) -> None:
        pid = self.pid()
        if pid is None:
            raise StackError(self.name, "not running")
        os.kill(pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_file, lines)

    @staticmethod
    def exit_status(pid: int) -> str:
        """How our child pid ended ("exit code 1", "killed by SIGKILL"), if known."""
        with _children_lock:
            proc = _children.get(pid)
        code = None if proc is None else proc.poll()
        if code is None:
            return "exit status unknown"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    @staticmethod
    def _reap(pid: int) -> None:
        with _children_lock:
            proc = _children.get(pid)
        if proc is not None:
            proc.poll()  # reaps it; the Popen stays registered for exit_status()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Poll predicate until it holds or timeout_s passes; True if it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)


def _port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_port_free(service: str, host: str, port: int) -> None:
    """Refuse to start when something that is not ours already listens there."""
    if _port_open(host, port):
        raise StackError(
            service,
            f"{host}:{port} is already in use by a process this stack did not start; "
            f"stop it or choose another port (CROSSCAM_{service.upper()}_PORT)",
        )


def _run_coro(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="crosscam-stack-probe")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------


def _kafka_process(cfg: StackConfig) -> ManagedProcess:
    return ManagedProcess(
        name="kafka",
        pid_file=cfg.kafka_dir / "kafka.pid",
        log_file=cfg.kafka_dir / "logs" / "stdout.log",
        markers=("kafka.Kafka", str(cfg.kafka_dir / "server.properties")),
    )


def _kafka_libs(cfg: StackConfig) -> Path:
    """Resolve the broker's jars with Maven once; later starts reuse them.

    The stamp holds the pom's hash, so editing the pom (e.g. a Kafka upgrade)
    resolves again. Resolution goes to a temporary folder that is renamed at
    the end, so an interrupted download never leaves a half classpath.
    """
    pom = KAFKA_DEPLOY_DIR / "pom.xml"
    libs = cfg.kafka_libs_dir
    stamp = libs / ".pom.sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("kafka", "Maven (mvn) is not installed; run deploy/install-system.sh")
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp = libs.with_name(f"{libs.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("resolving Kafka jars with Maven into %s (first start only)", libs)
    started = time.monotonic()
    proc = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        capture_output=True,
        text=True,
        timeout=KAFKA_RESOLVE_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise StackError(
            "kafka", f"Maven could not resolve {pom}", (proc.stdout + proc.stderr)[-4000:]
        )
    (tmp / ".pom.sha256").write_text(digest + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    try:
        tmp.replace(libs)
    except OSError:  # another process resolved it at the same time: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "resolved Kafka jars jars=%d seconds=%.1f",
        len(list(libs.glob("*.jar"))),
        time.monotonic() - started,
    )
    return libs


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise StackError("kafka", "no Java runtime (java) found; run deploy/install-system.sh")
    return java


def _kafka_cluster_id() -> str:
    """A Kafka cluster id, as ``StorageTool random-uuid`` makes one (saves a JVM start).

    Kafka's Uuid: 16 random bytes, URL-safe base64 without padding, never
    starting with '-' (that would read as a command-line flag).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _render_kafka_config(cfg: StackConfig) -> Path:
    template = string.Template((KAFKA_DEPLOY_DIR / "server.properties.template").read_text())
    text = template.substitute(
        host=cfg.host,
        kafka_port=cfg.kafka_port,
        controller_port=cfg.kafka_controller_port,
        data_dir=cfg.kafka_dir / "data",
        sasl_listener="".join(
            f",{name}://{cfg.host}:{port}"
            for name, port in (
                ("SASL_PLAINTEXT", cfg.kafka_sasl_port),
                ("SASL_SSL", cfg.kafka_sasl_tls_port),
            )
            if port
        ),
        tls_config=_kafka_tls_config(cfg) if cfg.kafka_sasl_tls_port else "",
    )
    path = cfg.kafka_dir / "server.properties"
    path.write_text(text)
    return path


def kafka_tls_ca(cfg: StackConfig | None = None) -> Path:
    """The CA certificate that signed the local broker's TLS certificate (``ssl_cafile``)."""
    cfg = cfg or StackConfig.from_env()
    return cfg.kafka_dir / "tls" / "ca.crt"


def _kafka_tls_config(cfg: StackConfig) -> str:
    """Make a CA and a server certificate for ``cfg.host`` (once), and the listener's TLS lines."""
    tls = cfg.kafka_dir / "tls"
    server = tls / "server.pem"
    if not server.exists():
        tls.mkdir(parents=True, exist_ok=True)
        openssl = shutil.which("openssl")
        if openssl is None:
            raise StackError("kafka", "openssl is not installed (TLS listener)")
        steps = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-subj", "/CN=crosscam local CA", "-keyout", "ca.key", "-out", "ca.crt"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cfg.host}",
             "-keyout", "server.key", "-out", "server.csr"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "3650", "-out", "server.crt",
             "-extfile", "san.cnf"],
        ]  # fmt: skip
        (tls / "san.cnf").write_text(f"subjectAltName=IP:{cfg.host},DNS:localhost\n")
        for args in steps:
            proc = subprocess.run([openssl, *args], cwd=tls, capture_output=True, text=True)
            if proc.returncode != 0:
                raise StackError("kafka", f"openssl {args[0]} failed", proc.stderr[-2000:])
        key = (tls / "server.key").read_text()
        server.write_text(key + (tls / "server.crt").read_text() + (tls / "ca.crt").read_text())
    return (
        "listener.name.sasl_ssl.ssl.keystore.type=PEM\n"
        f"listener.name.sasl_ssl.ssl.keystore.location={server}\n"
    )


def _kafka_format(cfg: StackConfig, java: str, libs: Path, properties: Path) -> None:
    """Format the log dir once; a formatted one keeps its data across restarts.

    The controller's address is written into the quorum's metadata at format
    time, so a later start on different ports is refused with a clear message
    instead of a broker that never elects a leader.
    """
    data = cfg.kafka_dir / "data"
    ports_file = cfg.kafka_dir / "formatted.json"
    ports = {"kafka_port": cfg.kafka_port, "controller_port": cfg.kafka_controller_port}
    if (data / "meta.properties").exists():
        with contextlib.suppress(FileNotFoundError, ValueError):
            before = json.loads(ports_file.read_text())
            if before != ports:
                raise StackError(
                    "kafka",
                    f"{data} was formatted for ports {before}, not {ports}; "
                    f"use those ports or delete {cfg.kafka_dir / 'data'}",
                )
        return
    cluster_id = _kafka_cluster_id()
    proc = subprocess.run(
        [
            java,
            "-Xmx256m",
            "-cp",
            f"{libs}/*",
            f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={cfg.kafka_dir / 'logs'}",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(properties),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise StackError("kafka", "StorageTool format failed", (proc.stdout + proc.stderr)[-4000:])
    ports_file.write_text(json.dumps(ports) + "\n")
    log.info("formatted Kafka log dir cluster_id=%s dir=%s", cluster_id, data)


async def _kafka_probe(bootstrap: str, timeout_s: float) -> dict[str, Any]:
    """Ask the broker for cluster metadata: up means a registered broker and a controller."""
    from aiokafka.admin import AIOKafkaAdminClient  # imported late: `stack status` stays light

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        connections_max_idle_ms=60000,
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if not cluster.get("brokers") or cluster.get("controller_id", -1) in (-1, None):
        raise ConnectionError(f"no broker registered yet: {cluster}")
    return cluster


class _QuietProbes(logging.Filter):
    """Drops aiokafka's records from threads that are probing readiness.

    aiokafka logs each refused connection at ERROR; while we poll a broker
    that is still starting, a refusal is an answer ("not yet"), not an error.
    Per thread, so a pipeline's own aiokafka logs in the same process stay.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self._local, "on", False)


_quiet_probes = _QuietProbes()
logging.getLogger("aiokafka").addFilter(_quiet_probes)
logging.getLogger("aiokafka.conn").addFilter(_quiet_probes)
logging.getLogger("aiokafka.cluster").addFilter(_quiet_probes)
logging.getLogger("aiokafka.admin.client").addFilter(_quiet_probes)


def _kafka_ready(cfg: StackConfig, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    if not _port_open(cfg.host, cfg.kafka_port):
        return False

    async def probe() -> dict[str, Any]:
        with _quiet_probes.active():
            return await _kafka_probe(kafka_bootstrap(cfg), timeout_s)

    try:
        _run_coro(probe)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
        log.debug("kafka probe failed: %s", exc)
        return False


def kafka_bootstrap(cfg: StackConfig | None = None) -> str:
    """``host:port`` for Kafka clients' ``bootstrap_servers``."""
    cfg = cfg or StackConfig.from_env()
    return f"{cfg.host}:{cfg.kafka_port}"


def kafka_start(cfg: StackConfig | None = None, timeout_s: float = KAFKA_START_TIMEOUT_S) -> None:
    """Start the broker (resolving and formatting on first use) and wait until it answers."""
    cfg = cfg or StackConfig.from_env()
    proc = _kafka_process(cfg)
    with proc.start_lock():
        if proc.alive():
            if _wait_until(lambda: _kafka_ready(cfg), timeout_s):
                for port in (cfg.kafka_sasl_port, cfg.kafka_sasl_tls_port):
                    if port and not _port_open(cfg.host, port):
                        raise StackError(
                            "kafka",
                            f"running without the SASL listener on {port}; "
                            "`stack down`, then `stack up --kafka-sasl`",
                        )
                return
            raise StackError(
                "kafka", f"running but not answering on {kafka_bootstrap(cfg)}", proc.log_tail()
            )
        _check_port_free("kafka", cfg.host, cfg.kafka_port)
        _check_port_free("kafka", cfg.host, cfg.kafka_controller_port)
        cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
        (cfg.kafka_dir / "logs").mkdir(exist_ok=True)
        java = _java()
        libs = _kafka_libs(cfg)
        properties = _render_kafka_config(cfg)
        _kafka_format(cfg, java, libs, properties)
        started = time.monotonic()
        pid = proc.spawn(
            [
                java,
                f"-Xmx{cfg.kafka_heap_mb}m",
                f"-Xms{min(256, cfg.kafka_heap_mb)}m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={cfg.kafka_dir / 'logs'}",
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(properties),
            ],
            cwd=cfg.kafka_dir,
        )
        _wait_ready(
            "kafka",
            proc,
            pid,
            lambda: _kafka_ready(cfg),
            timeout_s,
            extra_log=cfg.kafka_dir / "logs" / "server.log",
        )
        if cfg.kafka_sasl_port or cfg.kafka_sasl_tls_port:
            _kafka_scram_user(cfg, java, libs)
        log.info(
            "kafka ready bootstrap=%s seconds=%.1f",
            kafka_bootstrap(cfg),
            time.monotonic() - started,
        )


def _kafka_scram_user(cfg: StackConfig, java: str, libs: Path) -> None:
    """Create (or reset) the SCRAM user of the SASL listener, through the plaintext one.

    Kafka's own ConfigCommand, as ``kafka-configs.sh --alter --entity-type users``
    runs it; the credentials live in the cluster metadata, so they survive restarts.
    """
    # One mechanism per request (Kafka refuses to alter a credential twice in one).
    mechanism = f"SCRAM-SHA-512=[iterations=8192,password={cfg.kafka_sasl_password}]"
    proc = subprocess.run(
        [
            java,
            "-Xmx256m",
            "-cp",
            f"{libs}/*",
            f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={cfg.kafka_dir / 'logs'}",
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            kafka_bootstrap(cfg),
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            cfg.kafka_sasl_user,
            "--add-config",
            mechanism,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(
            "kafka", "could not create the SCRAM user", (proc.stdout + proc.stderr)[-4000:]
        )
    log.info(
        "kafka SCRAM user=%s listener=%s:%s", cfg.kafka_sasl_user, cfg.host, cfg.kafka_sasl_port
    )


def kafka_stop(cfg: StackConfig | None = None, timeout_s: float = KAFKA_STOP_TIMEOUT_S) -> bool:
    """Controlled shutdown of the broker (SIGTERM); its data stays. True if it was running."""
    cfg = cfg or StackConfig.from_env()
    return _kafka_process(cfg).stop(timeout_s)


def kafka_kill(cfg: StackConfig | None = None) -> bool:
    """SIGKILL the broker, as a crash would; its data stays (recovered on start)."""
    cfg = cfg or StackConfig.from_env()
    return _kafka_process(cfg).kill()


def _wait_ready(
    service: str,
    proc: ManagedProcess,
    pid: int,
    ready: Callable[[], bool],
    timeout_s: float,
    extra_log: Path | None = None,
) -> None:
    """Wait until ready() holds; fail at once, with the log, if the process dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return
        if proc.exited(pid):
            proc.forget(pid)
            tail = proc.log_tail()
            if extra_log is not None:
                tail = (tail + "\n" + _tail(extra_log)).strip()
            raise StackError(
                service, f"exited while starting (pid {pid}, {proc.exit_status(pid)})", tail
            )
        if time.monotonic() >= deadline:
            tail = proc.log_tail()
            if extra_log is not None:
                tail = (tail + "\n" + _tail(extra_log)).strip()
            proc.stop()
            raise StackError(service, f"not ready after {timeout_s:.0f} s; stopped it", tail)
        time.sleep(POLL_INTERVAL_S * 2)


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def _redis_process(cfg: StackConfig) -> ManagedProcess:
    return ManagedProcess(
        name="redis",
        pid_file=cfg.redis_dir / "redis.pid",
        log_file=cfg.redis_dir / "redis.log",
        markers=("redis-server", f"--port {cfg.redis_port}", str(cfg.redis_dir)),
    )


def _redis_ping(cfg: StackConfig, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((cfg.host, cfg.redis_port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_url(cfg: StackConfig | None = None) -> str:
    """``redis://`` URL of the stack's Redis (database 0)."""
    cfg = cfg or StackConfig.from_env()
    return f"redis://{cfg.host}:{cfg.redis_port}/0"


def redis_start(cfg: StackConfig | None = None, timeout_s: float = REDIS_START_TIMEOUT_S) -> None:
    """Start Redis without persistence (a cache and checkpoint store, not a database)."""
    cfg = cfg or StackConfig.from_env()
    proc = _redis_process(cfg)
    with proc.start_lock():
        if proc.alive():
            if _wait_until(lambda: _redis_ping(cfg), timeout_s):
                return
            raise StackError("redis", "running but not answering PING", proc.log_tail())
        _check_port_free("redis", cfg.host, cfg.redis_port)
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise StackError("redis", "redis-server is not installed; run deploy/install-system.sh")
        cfg.redis_dir.mkdir(parents=True, exist_ok=True)
        # Options are given as one argv word each ("--port 16379") so the marker
        # check sees them; set-proc-title no keeps Redis from rewriting its argv.
        pid = proc.spawn(
            [
                server,
                f"--port {cfg.redis_port}",
                f"--bind {cfg.host}",
                f"--dir {cfg.redis_dir}",
                "--save ''",
                "--appendonly no",
                "--daemonize no",
                "--set-proc-title no",
                "--protected-mode yes",
                "--loglevel notice",
                f"--logfile {cfg.redis_dir / 'redis.log'}",
            ],
            cwd=cfg.redis_dir,
        )
        _wait_ready("redis", proc, pid, lambda: _redis_ping(cfg), timeout_s)
        log.info("redis ready url=%s", redis_url(cfg))


def redis_stop(cfg: StackConfig | None = None) -> bool:
    """Stop Redis (its keys are gone: no persistence). True if it was running."""
    cfg = cfg or StackConfig.from_env()
    return _redis_process(cfg).stop()


# ---------------------------------------------------------------------------
# RTSP
# ---------------------------------------------------------------------------


def _rtsp_request(
    host: str, port: int, method: str, path: str, timeout_s: float = PROBE_TIMEOUT_S
) -> int | None:
    """Send one RTSP request; the status code, or None if nothing answered."""
    url = f"rtsp://{host}:{port}/{path}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(
                f"{method} {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode()
            )
            head = sock.recv(256).decode(errors="replace")
    except OSError:
        return None
    m = re.match(r"RTSP/1\.0 (\d{3})", head)
    return int(m.group(1)) if m else None


class RtspServer:
    """One ``devstack/rtsp_server.py`` process: video files served as live cameras.

    Each instance has its own port and state dir, so a test can run a private
    server (and pause or kill it) without touching the stack's. Cameras are
    files in ``<state_dir>/mounts``; the server picks them up while running,
    and mounts survive a restart of the server.
    """

    def __init__(self, port: int, state_dir: Path | str, host: str = HOST) -> None:
        self.port = port
        self.host = host
        self.state_dir = Path(state_dir).resolve()
        self.mounts_dir = self.state_dir / "mounts"
        self._proc = ManagedProcess(
            name="rtsp",
            pid_file=self.state_dir / "rtsp.pid",
            log_file=self.state_dir / "rtsp.log",
            markers=(str(RTSP_SERVER_SCRIPT), f"--port={port}", f"--state-dir={self.state_dir}"),
        )

    def __repr__(self) -> str:
        return f"RtspServer(port={self.port}, state_dir={str(self.state_dir)!r})"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._proc.pid()

    def url(self, camera_id: str) -> str:
        return f"rtsp://{self.host}:{self.port}/{camera_id}"

    def running(self) -> bool:
        return self._proc.alive()

    def ready(self) -> bool:
        """The server answers RTSP OPTIONS (it really bound its port)."""
        return _rtsp_request(self.host, self.port, "OPTIONS", "") == 200

    def start(self, timeout_s: float = RTSP_START_TIMEOUT_S) -> None:
        """Start the server (no-op if running) and wait until it answers OPTIONS."""
        with self._proc.start_lock():
            if self._proc.alive():
                if _wait_until(self.ready, timeout_s):
                    return
                raise StackError(
                    "rtsp", f"running but not answering on port {self.port}", self._proc.log_tail()
                )
            if not Path(SYSTEM_PYTHON).exists():
                raise StackError("rtsp", f"{SYSTEM_PYTHON} not found; run deploy/install-system.sh")
            _check_port_free("rtsp", self.host, self.port)
            self.mounts_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "status.json").unlink(missing_ok=True)
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))
            }
            env["PYTHONUNBUFFERED"] = "1"
            pid = self._proc.spawn(
                [
                    SYSTEM_PYTHON,
                    str(RTSP_SERVER_SCRIPT),
                    f"--host={self.host}",
                    f"--port={self.port}",
                    f"--state-dir={self.state_dir}",
                ],
                cwd=self.state_dir,
                env=env,
            )
            _wait_ready("rtsp", self._proc, pid, self.ready, timeout_s)
            log.info("rtsp ready port=%d state_dir=%s", self.port, self.state_dir)

    def stop(self) -> bool:
        """Graceful stop (SIGTERM); mounts stay for the next start. True if it ran."""
        return self._proc.stop()

    def kill(self) -> bool:
        """SIGKILL, as a crashed camera server. True if it ran."""
        return self._proc.kill()

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung camera)."""
        self._proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._proc.signal(signal.SIGCONT)

    def mounts(self) -> dict[str, dict[str, Any]]:
        """What the running server reports per camera: state live/starting/ended/error."""
        try:
            return dict(json.loads((self.state_dir / "status.json").read_text())["mounts"])
        except (FileNotFoundError, ValueError, KeyError):
            return {}

    def publish(
        self,
        camera_id: str,
        path: Path | str,
        fps: float | None = None,
        loop: bool = True,
        timeout_s: float = RTSP_PUBLISH_TIMEOUT_S,
        *,
        pre_encode: bool = False,
        debug_stall: bool = False,
    ) -> str:
        """Serve a video file as camera ``camera_id``; returns its ``rtsp://`` URL.

        If the server runs, waits until the camera is live and answers DESCRIBE;
        otherwise the mount is recorded and goes live on :meth:`start`.
        ``fps`` resamples to that rate (default: the file's own); ``loop=False``
        ends the stream at the end of the file. ``pre_encode`` encodes the file
        to H.264 at ``fps`` once (ffmpeg, cached under the state dir) and serves
        that without decoding or re-encoding per camera, as a real camera would:
        what a benchmark of the pipeline wants. ``debug_stall`` makes the camera's
        first media stall once its first client plays, to test the server's watchdog.
        """
        urls = self.publish_together(
            {camera_id: path}, fps, loop, timeout_s, pre_encode=pre_encode, debug_stall=debug_stall
        )
        return urls[camera_id]

    def publish_together(
        self,
        files: dict[str, Path | str],
        fps: float | None = None,
        loop: bool = True,
        timeout_s: float = RTSP_PUBLISH_TIMEOUT_S,
        *,
        pre_encode: bool = False,
        debug_stall: bool = False,
    ) -> dict[str, str]:
        """Serve several files as cameras that start playing at the same moment (one
        rescan of the server mounts them all), as a recording of cameras that filmed
        together must be replayed; returns each camera's URL. Otherwise as :meth:`publish`.
        """
        specs: dict[str, dict[str, Any]] = {}
        for camera_id, path in files.items():  # every check and encoding before any mount
            if not CAMERA_ID_RE.match(camera_id):
                raise ValueError(f"camera id {camera_id!r} must match {CAMERA_ID_RE.pattern}")
            file = Path(path).resolve()
            if not file.is_file():
                raise FileNotFoundError(file)
            if fps is not None and not 0 < fps <= 240:
                raise ValueError(f"fps must be in (0, 240], got {fps}")
            specs[camera_id] = {"path": str(file), "fps": fps, "loop": loop}
            if pre_encode:
                specs[camera_id] = {
                    "path": str(encode_h264(file, fps, self.state_dir / "encoded")),
                    "fps": None,
                    "loop": loop,
                    "encoded": "h264",
                }
            if debug_stall:
                specs[camera_id]["debug_stall"] = True
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        staged = []
        for camera_id, spec in specs.items():
            target = self.mounts_dir / f"{camera_id}.json"
            tmp = self.mounts_dir / f".{camera_id}.json.tmp"
            tmp.write_text(json.dumps(spec) + "\n")
            if target.exists():  # a changed mount: remove first so the server sees a new file
                self.unpublish(camera_id, timeout_s=timeout_s)
            staged.append((tmp, target))
        for tmp, target in staged:  # back to back: the server's next rescan sees them all
            tmp.replace(target)
        urls = {camera_id: self.url(camera_id) for camera_id in specs}
        if not self.running():
            return urls

        def live(camera_id: str) -> bool:
            state = self.mounts().get(camera_id, {})
            if state.get("state") == "error":
                raise StackError(
                    "rtsp",
                    f"camera {camera_id} failed: {state.get('error')}",
                    self._proc.log_tail(),
                )
            return (
                state.get("state") == "live"
                and _rtsp_request(self.host, self.port, "DESCRIBE", camera_id) == 200
            )

        for camera_id in specs:
            if not _wait_until(partial(live, camera_id), timeout_s):
                raise StackError(
                    "rtsp",
                    f"camera {camera_id} not live after {timeout_s:.0f} s",
                    self._proc.log_tail(),
                )
            log.info(
                "rtsp camera live camera=%s url=%s file=%s",
                camera_id,
                urls[camera_id],
                specs[camera_id]["path"],
            )
        return urls

    def unpublish(self, camera_id: str, timeout_s: float = RTSP_PUBLISH_TIMEOUT_S) -> None:
        """Stop serving camera_id; its clients get end-of-stream."""
        (self.mounts_dir / f"{camera_id}.json").unlink(missing_ok=True)
        if self.running() and not _wait_until(lambda: camera_id not in self.mounts(), timeout_s):
            raise StackError("rtsp", f"camera {camera_id} still mounted after {timeout_s:.0f} s")

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def camera_like_h264(file: Path, fps: float | None) -> bool:
    """``file`` is already H.264 as a camera sends it (baseline, no B-frames) at ``fps``
    (None: any rate), so it can be served as it is (``crosscam scenario`` writes such files)."""
    from service.uploads import NotAVideo, probe_video  # the uploads' own probe

    if shutil.which("ffprobe") is None:
        return False
    try:
        probe = probe_video(str(file))
    except NotAVideo:
        return False
    return (
        probe.codec == "h264"
        and "Baseline" in probe.profile
        and probe.b_frames == 0
        and (fps is None or abs(probe.fps - fps) < 1e-3)
    )


def encode_h264(file: Path, fps: float | None, cache_dir: Path) -> Path:
    """``file`` encoded once to H.264 as a camera sends it, cached by content stamp and rate;
    a file that already is (:func:`camera_like_h264`) is only copied into the server's
    container (Matroska), its pictures unchanged.

    Baseline profile, no B-frames, a keyframe every ``RTSP_KEY_INT`` frames, at
    ``fps`` (frames repeated or dropped as needed; None = the file's rate).
    Concurrent callers of the same file wait for one encode.
    """
    as_is = camera_like_h264(file, fps)
    st = file.stat()
    ident = f"{file}|{st.st_size}|{st.st_mtime_ns}|{fps}|{RTSP_KEY_INT}|{as_is}"
    out = cache_dir / f"{file.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.mkv"
    if out.exists():
        return out
    if shutil.which("ffmpeg") is None:
        raise StackError("rtsp", "ffmpeg not found: needed to pre-encode camera files")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".encode.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            return out
        tmp = out.with_suffix(f".tmp{os.getpid()}.mkv")
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(file), "-an"]
        if as_is:  # the same pictures, bit for bit, in the container the server plays
            cmd += ["-c:v", "copy", str(tmp)]
        else:
            cmd += ["-r", f"{fps:g}"] if fps is not None else []
            cmd += ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "baseline"]
            cmd += ["-bf", "0", "-g", str(RTSP_KEY_INT), "-keyint_min", str(RTSP_KEY_INT)]
            cmd += ["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-b:v", "2M", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=ENCODE_TIMEOUT_S)
        if res.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise StackError("rtsp", f"ffmpeg could not encode {file}", res.stderr[-2000:])
        tmp.replace(out)
    log.info("rtsp camera file encoded file=%s fps=%s out=%s", file, fps, out)
    return out


def stack_rtsp(cfg: StackConfig | None = None) -> RtspServer:
    """The stack's own RTSP server."""
    cfg = cfg or StackConfig.from_env()
    return RtspServer(cfg.rtsp_port, cfg.rtsp_dir, host=cfg.host)


def rtsp_url(camera_id: str, cfg: StackConfig | None = None) -> str:
    """URL of a camera on the stack's RTSP server."""
    return stack_rtsp(cfg).url(camera_id)


def rtsp_publish(
    camera_id: str,
    path: Path | str,
    fps: float | None = None,
    loop: bool = True,
    cfg: StackConfig | None = None,
    *,
    pre_encode: bool = False,
) -> str:
    """Serve a file as a camera on the stack's RTSP server; returns the URL."""
    return stack_rtsp(cfg).publish(camera_id, path, fps=fps, loop=loop, pre_encode=pre_encode)


def rtsp_publish_together(
    files: dict[str, Path | str],
    loop: bool = True,
    cfg: StackConfig | None = None,
    *,
    pre_encode: bool = False,
) -> dict[str, str]:
    """Serve files as cameras that start at the same moment; each camera's URL."""
    return stack_rtsp(cfg).publish_together(files, loop=loop, pre_encode=pre_encode)


def rtsp_unpublish(camera_id: str, cfg: StackConfig | None = None) -> None:
    """Remove a camera from the stack's RTSP server."""
    stack_rtsp(cfg).unpublish(camera_id)


# ---------------------------------------------------------------------------
# Prometheus (optional)
# ---------------------------------------------------------------------------


def _prometheus_process(cfg: StackConfig) -> ManagedProcess:
    return ManagedProcess(
        name="prometheus",
        pid_file=cfg.prometheus_dir / "prometheus.pid",
        log_file=cfg.prometheus_dir / "prometheus.log",
        markers=("prometheus", f"--storage.tsdb.path={cfg.prometheus_dir / 'data'}"),
    )


def prometheus_url(cfg: StackConfig | None = None) -> str:
    cfg = cfg or StackConfig.from_env()
    return f"http://{cfg.host}:{cfg.prometheus_port}"


def prometheus_targets_dir(cfg: StackConfig | None = None) -> Path:
    """Where a stage drops ``<name>.json`` (file_sd format) to be scraped."""
    cfg = cfg or StackConfig.from_env()
    return cfg.prometheus_dir / "targets"


def register_scrape_target(
    name: str,
    address: str,
    labels: dict[str, str] | None = None,
    cfg: StackConfig | None = None,
) -> Path:
    """Ask the stack's Prometheus to scrape ``address`` (``host:port``) as ``name``.

    Writes ``<state>/prometheus/targets/<name>.json`` atomically (Prometheus
    rereads the folder on change and would log a half-written file as an
    error). Works whether or not Prometheus runs; it picks targets up on start.
    """
    if not CAMERA_ID_RE.match(name):
        raise ValueError(f"target name {name!r} must match {CAMERA_ID_RE.pattern}")
    folder = prometheus_targets_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps([{"targets": [address], "labels": dict(labels or {})}]))
    tmp.replace(target)
    return target


def unregister_scrape_target(name: str, cfg: StackConfig | None = None) -> None:
    """Stop scraping what :func:`register_scrape_target` registered as ``name``."""
    (prometheus_targets_dir(cfg) / f"{name}.json").unlink(missing_ok=True)


def _prometheus_ready(cfg: StackConfig) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(prometheus_url(cfg) + "/-/ready", timeout=PROBE_TIMEOUT_S) as r:
            return int(r.status) == 200
    except OSError:
        return False


def _prometheus_config(cfg: StackConfig) -> Path:
    """Copy the config and the alert rules (deploy/prometheus) into the state dir."""
    config = cfg.prometheus_dir / "prometheus.yml"
    shutil.copyfile(PROMETHEUS_CONFIG, config)
    rules = config.parent / "rules"
    shutil.rmtree(rules, ignore_errors=True)
    shutil.copytree(PROMETHEUS_CONFIG.parent / "rules", rules)
    return config


def prometheus_start(cfg: StackConfig | None = None, timeout_s: float = 30.0) -> None:
    """Start Debian's prometheus with deploy/prometheus/prometheus.yml.

    The config reads scrape targets from ``<state>/prometheus/targets/*.json``
    (relative ``file_sd`` paths resolve against the config's folder, so the
    config is copied into the state dir).
    """
    cfg = cfg or StackConfig.from_env()
    proc = _prometheus_process(cfg)
    with proc.start_lock():
        if proc.alive():
            # Pick up edited scrape config and alert rules without a restart.
            _prometheus_config(cfg)
            proc.signal(signal.SIGHUP)
            if _wait_until(lambda: _prometheus_ready(cfg), timeout_s):
                return
            raise StackError("prometheus", "running but not ready", proc.log_tail())
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            raise StackError(
                "prometheus", "prometheus is not installed; run deploy/install-system.sh"
            )
        _check_port_free("prometheus", cfg.host, cfg.prometheus_port)
        prometheus_targets_dir(cfg).mkdir(parents=True, exist_ok=True)
        config = _prometheus_config(cfg)
        pid = proc.spawn(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={cfg.prometheus_dir / 'data'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address={cfg.host}:{cfg.prometheus_port}",
                "--log.level=warn",
            ],
            cwd=cfg.prometheus_dir,
        )
        _wait_ready("prometheus", proc, pid, lambda: _prometheus_ready(cfg), timeout_s)
        log.info("prometheus ready url=%s", prometheus_url(cfg))


def prometheus_stop(cfg: StackConfig | None = None) -> bool:
    cfg = cfg or StackConfig.from_env()
    return _prometheus_process(cfg).stop()


# ---------------------------------------------------------------------------
# the stack as a whole
# ---------------------------------------------------------------------------


def _service_state(alive: bool, answers: Callable[[], bool]) -> str:
    if not alive:
        return "down"
    return "up" if answers() else "unresponsive"


def status(cfg: StackConfig | None = None) -> dict[str, str]:
    """Each service: "up" (ours and answering), "unresponsive" (ours, silent) or "down".

    Prometheus is listed only while it runs (it is optional).
    """
    cfg = cfg or StackConfig.from_env()
    rtsp = stack_rtsp(cfg)
    result = {
        "kafka": _service_state(_kafka_process(cfg).alive(), lambda: _kafka_ready(cfg)),
        "redis": _service_state(_redis_process(cfg).alive(), lambda: _redis_ping(cfg)),
        "rtsp": _service_state(rtsp.running(), rtsp.ready),
    }
    if _prometheus_process(cfg).alive():
        result["prometheus"] = _service_state(True, lambda: _prometheus_ready(cfg))
    return result


_STARTERS: dict[str, Callable[[StackConfig], None]] = {
    "kafka": kafka_start,
    "redis": redis_start,
    "rtsp": lambda cfg: stack_rtsp(cfg).start(),
    "prometheus": prometheus_start,
}


def up(
    services: Iterable[str] = SERVICES,
    prometheus: bool = False,
    cfg: StackConfig | None = None,
) -> dict[str, str]:
    """Start the services that are not running and wait until each answers.

    Idempotent: running services are only probed. Kafka (the slow one) is
    started first and the others come up while its JVM boots. Raises
    StackError naming the failing service, with its log tail.
    """
    cfg = cfg or StackConfig.from_env()
    wanted = list(dict.fromkeys(services))
    if prometheus and "prometheus" not in wanted:
        wanted.append("prometheus")
    unknown = [s for s in wanted if s not in _STARTERS]
    if unknown:
        raise ValueError(f"unknown services {unknown}; known: {sorted(_STARTERS)}")
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    errors: dict[str, BaseException] = {}

    def run(name: str) -> None:
        try:
            _STARTERS[name](cfg)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors[name] = exc

    threads = [
        threading.Thread(target=run, args=(name,), name=f"crosscam-stack-{name}") for name in wanted
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in wanted:  # report in a stable order
        if name in errors:
            raise errors[name]
    result = status(cfg)
    log.info("stack up services=%s seconds=%.1f", ",".join(wanted), time.monotonic() - started)
    return result


def down(cfg: StackConfig | None = None) -> dict[str, str]:
    """Stop every process this stack started (and nothing else); data stays."""
    cfg = cfg or StackConfig.from_env()
    stack_rtsp(cfg).stop()
    redis_stop(cfg)
    prometheus_stop(cfg)
    kafka_stop(cfg)
    return status(cfg)


__all__ = [
    "SERVICES",
    "RtspServer",
    "StackConfig",
    "StackError",
    "down",
    "kafka_bootstrap",
    "kafka_kill",
    "kafka_start",
    "kafka_stop",
    "prometheus_start",
    "prometheus_stop",
    "prometheus_targets_dir",
    "prometheus_url",
    "redis_start",
    "redis_stop",
    "redis_url",
    "register_scrape_target",
    "rtsp_publish",
    "rtsp_publish_together",
    "rtsp_unpublish",
    "rtsp_url",
    "stack_rtsp",
    "status",
    "unregister_scrape_target",
    "up",
]
