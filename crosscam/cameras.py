"""Cameras at runtime for ``crosscam run``: ingest processes follow the camera registry.

The runner seeds the registry (:mod:`service.camera_registry`) from the cameras
file once, then :class:`IngestReconciler` compares, every poll, the registry's
enabled cameras with a source against the supervisor's ``ingest-<camera>``
children: a new camera gets an ingest, a removed or disabled one loses it, a
changed source restarts it. An ingest that finished its file (exit 0) stays
finished until its source changes. Uploaded recordings (:mod:`service.uploads`)
each get one replay (``upload-<id>``), marked done once it read the whole file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from crosscam.supervisor import ProcessSpec, Supervisor
from service.camera_registry import CameraRegistry
from service.uploads import UploadStore

log = logging.getLogger(__name__)

INGEST_PREFIX = "ingest-"
UPLOAD_PREFIX = "upload-"
POLL_S = 1.0


class IngestReconciler:
    """Keeps one ingest child per enabled registered camera with a source.

    Args:
        registry: the camera registry.
        supervisor: whose ``ingest-*`` children are managed.
        make_spec: the process spec of a camera's ingest, from (camera id, source).
        make_replay: the process spec of an upload's replay, from (upload id, camera id,
            file, start ns); None: uploads are not replayed here.
    """

    def __init__(
        self, registry: CameraRegistry, supervisor: Supervisor,
        make_spec: Callable[[str, str], ProcessSpec], poll_s: float = POLL_S,
        make_replay: Callable[[str, str, str, int], ProcessSpec] | None = None,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.uploads = UploadStore(registry.client)
        self.supervisor = supervisor
        self.make_spec = make_spec
        self.make_replay = make_replay
        self.poll_s = poll_s
        self.seen = -1
        self._next = 0.0

    def desired(self) -> dict[str, tuple[str, str]]:
        """Process name -> (camera id, source) for every camera whose ingest should run."""
        return {
            f"{INGEST_PREFIX}{cam}": (cam, e.camera.source)
            for cam, e in self.registry.entries().items()
            if e.enabled and e.camera.source
        }

    def tick(self) -> bool:
        """Reconcile when the registry changed (at most every ``poll_s``); True when it did."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.poll_s
        self._finish_uploads()
        version = self.registry.version()
        if version == self.seen:
            return False
        self.reconcile()
        self.seen = version
        return True

    def reconcile(self) -> None:
        """Start, stop or restart ingest children to match the registry."""
        want = self.desired()
        have = {
            n: c.spec for n, c in self.supervisor.children.items() if n.startswith(INGEST_PREFIX)
        }
        for name in sorted(set(have) - set(want)):
            log.info("ingest_removed", extra={"child": name})
            self.supervisor.remove(name)
        for name, (cam, source) in sorted(want.items()):
            spec = self.make_spec(cam, source)
            if name in have and have[name].argv == spec.argv:
                continue
            if name in have:
                log.info("ingest_source_changed", extra={"child": name})
                self.supervisor.remove(name)
            log.info("ingest_added", extra={"child": name})
            self.supervisor.add(spec)
        self._start_uploads()

    def _start_uploads(self) -> None:
        """A replay for each queued upload (each runs once; ``done`` when the file was read)."""
        if self.make_replay is None:
            return
        for up in self.uploads.all():
            name = f"{UPLOAD_PREFIX}{up.upload_id}"
            if up.state == "done" or name in self.supervisor.children:
                continue
            log.info("upload_replay_started", extra={"child": name, "camera": up.camera_id})
            self.supervisor.add(self.make_replay(up.upload_id, up.camera_id, up.path, up.start_ns))
            self.uploads.set_state(up.upload_id, "replaying")

    def _finish_uploads(self) -> None:
        for name, child in list(self.supervisor.children.items()):
            if name.startswith(UPLOAD_PREFIX) and not child.enabled and child.proc is None:
                upload_id = name.removeprefix(UPLOAD_PREFIX)
                up = self.uploads.get(upload_id)
                counts = self.uploads.final_counts(up.camera_id) if up else {}
                self.uploads.set_state(upload_id, "done", **counts)
                self.supervisor.children.pop(name, None)
                log.info("upload_replay_done", extra={"child": name})
