"""``crosscam reid``: the ReID stage (tracklets -> Qdrant, matches), thin around the engine.

Consumer group on the tracklets topic. For each tracklet: aggregate, search
the store, link (:mod:`reid.linker`), upsert, and publish the events to the
public matches topic keyed by global id (JSON). Global ids come from a Redis
counter and live in the store's payload, so a restart keeps them: on start,
the newest window of stored tracklets is restored as frozen anchors. The
query API (:mod:`reid.api`) runs in the same process, since the embedded
store opens in one process only.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis
from fastapi import APIRouter

from reid import metrics as m
from reid.api import ReidApi, start_api
from reid.cameras_api import TopologyFollower, cameras_router
from reid.embedding import MODEL_FILE as EMBEDDER_FILE
from reid.engine import Engine, Processed
from reid.erasure import ErasureReport
from reid.erasure_job import erase_everywhere, erased_tracklets, publish_erased
from reid.operator import Corrector, MatchPublisher, load_constraints
from reid.operator_api import OperatorApi, Searcher, operator_router
from reid.ordering import in_order
from reid.qdrant_store import LockedStore, open_store
from reid.retention_job import start_background as start_retention
from reid.settings import ReidSettingsRoot
from reid.sitemap_api import SiteMap, sitemap_router
from reid.store import Scope, VectorStore
from reid.topology import Topology
from reid.uploads_api import uploads_router
from schemas.cameras import load_cameras_file
from schemas.messages import Tracklet
from schemas.topics import MATCHES, TRACKLETS
from service.assets import model_path
from service.camera_registry import CameraRegistry
from service.cli import add_stage_arguments, load_stage_settings, serve_stage
from service.delivery import apply_each
from service.kafka import Output, Record, dead_letter
from service.metrics import camera_label, start_metrics_server
from service.uploads import UploadStore
from service.web import WebContext, web_context

log = logging.getLogger(__name__)


def check_tracklet(t: Tracklet) -> str | None:
    """Why a tracklet cannot be linked (sizes that disagree), or None."""
    if t.ts_end_ns < t.ts_start_ns:
        return "ts_end_ns before ts_start_ns"
    if t.embedding_dim and len(t.embeddings) % (4 * t.embedding_dim):
        return f"embeddings: {len(t.embeddings)} bytes do not split into rows of {t.embedding_dim}"
    dims = {len(c.embedding) for c in t.crops if c.embedding}
    if len(dims) > 1:
        return f"crops carry vectors of different sizes {sorted(dims)}"
    if any(len(b) % 4 for b in (t.embeddings, *(c.embedding for c in t.crops))):
        return "a vector is not a whole number of float32"
    vectors = [
        np.frombuffer(t.embeddings, "<f4"),
        *(np.frombuffer(c.embedding, "<f4") for c in t.crops),
    ]
    if not all(np.isfinite(v).all() for v in vectors):
        return "a vector is not finite (NaN or inf)"
    return None


class ReidStage:
    """The :class:`service.kafka.Stage` of the ReID service."""

    name = "reid"
    input = TRACKLETS

    def __init__(
        self,
        engine: Engine,
        erased: Callable[[list[str]], set[str]] | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.engine = engine
        self.erased = erased
        """Which of these tracklet ids belong to erased identities (a replay must not revive them)."""
        self.lock = lock or threading.Lock()
        """Held while the engine links one tracklet; erasure, operators' corrections and a
        topology change take it too, so none of them interleaves with linking."""

    def handle(self, records: list[Record]) -> list[Output]:
        """Link the tracklets one by one; a failure keeps the outputs of those before it.

        Each tracklet either goes through whole or leaves the linker as it was
        (restored from a snapshot), so a retried tracklet is linked again
        rather than skipped as a replay (see :mod:`service.delivery`).
        """
        outputs = apply_each(records, self._handle_one)
        m.LIVE_TRACKLETS.set(self.engine.linker.live_count())
        m.STORE_POINTS.set(self.engine.store.count())
        return outputs

    def _handle_one(self, rec: Record) -> list[Output]:
        t: Tracklet = rec.message
        problem = check_tracklet(t)
        if problem is not None:
            return [dead_letter(self.name, rec, problem)]
        cam = t.camera_id
        m.TRACKLETS_IN.labels(camera_label(cam)).inc()
        if self.erased is not None and self.erased([t.tracklet_id]):
            m.TRACKLETS_SKIPPED.labels(camera_label(cam), "erased").inc()
            return []
        with self.lock:
            res = self._process_atomically(t)
        if res.skipped:
            m.TRACKLETS_SKIPPED.labels(camera_label(cam), res.skipped).inc()
            return []
        m.SEARCH_SECONDS.labels(camera_label(cam)).observe(res.search_seconds)
        outputs: list[Output] = []
        for e in in_order(res.events):
            if e.kind == "link":
                m.LINKS.labels(camera_label(cam)).inc()
            elif e.kind == "new_identity":
                m.NEW_IDENTITIES.labels(camera_label(cam)).inc()
            elif e.kind == "merge":
                m.MERGES.inc(len(e.merged_ids))
            elif e.kind == "split":
                m.SPLITS.inc()
            outputs.append(Output.of(MATCHES, e.global_id, e))
        return outputs

    def _process_atomically(self, t: Tracklet) -> Processed:
        """``engine.process``; if it raises, the linker is put back as it was before.

        The store writes (upserts keyed by tracklet id) are idempotent; the
        one gap: if the tracklet's upsert succeeded and the next store call
        failed, a retry finds it stored and skips it as a replay.
        """
        linker = self.engine.linker
        before = snapshot_attributes(linker)
        try:
            return self.engine.process(t)
        except Exception:
            vars(linker).clear()
            vars(linker).update(before)
            raise


def _copy_container(value: Any) -> Any:
    if isinstance(value, dict | list | set):
        return copy.copy(value)
    return value


def snapshot_attributes(obj: object) -> dict[str, Any]:
    """``obj``'s attributes with their containers copied two levels deep.

    Enough to undo the linker's bookkeeping (dicts of sightings, dicts of
    dicts of distances) at the cost of copying references only: the values
    inside (sightings, spans, vectors) are never changed in place. A deep copy
    would copy every vector in the window for each tracklet.
    """
    snap: dict[str, Any] = {}
    for name, value in vars(obj).items():
        value = _copy_container(value)
        if isinstance(value, dict):
            for key, inner in value.items():
                value[key] = _copy_container(inner)
        snap[name] = value
    return snap


_NEXT_GLOBAL_ID = """
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
return n
"""
"""INCR that never returns a number at or below ARGV[1] (atomic, so replicas never clash)."""

_GLOBAL_ID_NUMBER = re.compile(r"^g(\d+)$")


def highest_global_id(store: VectorStore) -> int:
    """The largest ``g<N>`` number held in the store (0 when none)."""
    numbers = (_GLOBAL_ID_NUMBER.match(t.global_id) for t in store.scroll(Scope()))
    return max((int(m.group(1)) for m in numbers if m), default=0)


def redis_global_ids(client: redis.Redis, key: str, floor: int = 0) -> Callable[[], str]:
    """Global ids from a Redis counter: unique across restarts and replicas.

    The counter never goes back to or below ``floor`` (the highest id in the store
    at start) or any id this process gave out: Redis runs without persistence, so
    a Redis restart empties the counter, and a bare INCR would then give ``g1``
    to a new person while ``g1`` is still someone else (their tracklets would
    merge into one identity on the matches topic).
    """
    script = client.register_script(_NEXT_GLOBAL_ID)
    highest = floor

    def next_id() -> str:
        nonlocal highest
        n = int(script(keys=[key], args=[highest]))  # type: ignore[arg-type]
        highest = max(highest, n)
        return f"g{n}"

    return next_id


def build(settings: ReidSettingsRoot) -> tuple[Engine, VectorStore, Topology]:
    """The engine over the configured store and topology (restored from the store)."""
    cfg = settings.reid
    client = redis.Redis.from_url(settings.redis.url)
    if cfg.camera_registry:  # runtime cameras: the registry, seeded once from the file
        registry = CameraRegistry(client)
        if cfg.cameras_file:
            registry.seed(load_cameras_file(cfg.cameras_file), cfg.cameras_file.resolve().parent,
                          str(cfg.cameras_file))  # fmt: skip
        topology = Topology(registry.spec())
    else:
        topology = (
            Topology.load(cfg.cameras_file)
            if cfg.cameras_file
            else Topology.open_world(cfg.window_s)
        )
    q = settings.qdrant
    kind = "server" if q.url else q.embedded
    store = LockedStore(open_store(kind, cfg.data_dir / f"qdrant-{kind}", cfg.dim, url=q.url or None,
                                   api_key=q.api_key or None))  # fmt: skip
    ids = redis_global_ids(client, cfg.global_id_key, floor=highest_global_id(store))
    engine = Engine(store, topology, cfg.engine_params(), ids, cfg.data_dir / "thumbnails",
                    load_constraints(client))  # fmt: skip
    restored = engine.restore()
    log.info("reid_started", extra={"store": kind, "points": store.count(), "restored": restored,
                                     "cameras": len(topology.cameras), "links": len(topology.spec.links)})  # fmt: skip
    return engine, store, topology


def eraser(
    stage: ReidStage, thumbnails: Path, client: redis.Redis, settings: ReidSettingsRoot
) -> Callable[[str], ErasureReport]:
    """Erasure for the API: under the stage's lock, then ``erased`` on the match topic."""

    def erase(global_id: str) -> ErasureReport:
        with stage.lock:
            report = erase_everywhere(stage.engine.store, thumbnails, global_id,
                                      linker=stage.engine.linker, redis_client=client)  # fmt: skip
        if report.found:
            asyncio.run(publish_erased(settings.kafka, global_id))
        return report

    return erase


def operator_routes(
    api: ReidApi, engine: Engine, lock: threading.Lock, settings: ReidSettingsRoot,
    web: WebContext,
) -> APIRouter:  # fmt: skip
    """The operator routes (corrections, search by example) over this process's engine."""
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5.0)
    publisher = MatchPublisher(settings.kafka)
    web.on_stop.append(publisher.close)
    searcher = Searcher(settings.reid.embedder_model or model_path(EMBEDDER_FILE))
    return operator_router(OperatorApi(api, Corrector(engine, lock, client), publisher, searcher))


def follow_registry(
    api: ReidApi, engine: Engine, lock: threading.Lock, settings: ReidSettingsRoot
) -> TopologyFollower:
    """Swap the stage's and the API's topology whenever the camera registry changes."""

    def apply(topology: Topology) -> None:
        with lock:  # never in the middle of linking a tracklet
            engine.topology = engine.linker.topology = api.topology = topology

    follower = TopologyFollower(CameraRegistry(redis.Redis.from_url(settings.redis.url)), apply)
    follower.refresh()
    follower.start()
    return follower


def configure(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(
        parser,
        "crosscam-reid",
        "kafka, redis, metrics, qdrant, reid",
        "redis:// URL (overrides the config)",
    )
    parser.add_argument(
        "--cameras", type=Path, default=None, help="cameras file (overrides reid.cameras_file)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="store and thumbnails folder")
    parser.add_argument("--qdrant-url", default=None, help="Qdrant server URL (default: embedded)")
    parser.add_argument(
        "--api-port", type=int, default=None, help="query API port (0 = any free port)"
    )


def main(args: argparse.Namespace) -> int:
    settings = load_stage_settings(
        ReidSettingsRoot,
        args,
        qdrant={"url": args.qdrant_url},
        reid={
            "cameras_file": args.cameras,
            "data_dir": args.data_dir,
            "api_port": args.api_port,
        },
    )
    if settings is None:
        return 2
    engine, store, topology = build(settings)
    start_metrics_server(settings.metrics, name="reid")
    client = redis.Redis.from_url(settings.redis.url)
    stage = ReidStage(engine, erased=lambda ids: erased_tracklets(client, ids))
    thumbnails = settings.reid.data_dir / "thumbnails"
    stop = threading.Event()
    start_retention(store, thumbnails, settings.retention, settings.kafka, stop)
    web = web_context(args.config, settings.redis, settings.kafka, "reid")  # [web]: tokens, audit
    lock = stage.lock
    api = ReidApi(store, topology, thumbnails, erase=eraser(stage, thumbnails, client, settings))
    routers = [operator_routes(api, engine, lock, settings, web)]
    site = SiteMap(redis.Redis.from_url(settings.redis.url), settings.reid.data_dir / "sitemap")
    engine.plan_track = site.track  # tracklets carry their plan trajectory
    routers.append(sitemap_router(site, lambda: api.topology))
    follower = None
    if settings.reid.camera_registry:
        follower = follow_registry(api, engine, lock, settings)
        routers.append(cameras_router(follower.registry, follower))
        routers.append(uploads_router(follower.registry, UploadStore(follower.registry.client),
                                      settings.reid.data_dir / "uploads"))  # fmt: skip
    server, _ = start_api(api, web, settings.reid.api_host, settings.reid.api_port, routers)

    try:
        serve_stage(stage, settings.kafka, args.group_id)
    finally:
        stop.set()
        if follower is not None:
            follower.stop()
        server.stop()
        web.close()
        store.close()
    return 0
