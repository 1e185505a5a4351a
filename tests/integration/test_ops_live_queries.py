"""Every dashboard query and every alert expression, run against the real Prometheus
while the pipeline runs on live cameras.

Two PETS views are served as looping RTSP cameras; ingest per camera, the detector, the
tracker and ReID run supervised (``crosscam run``'s specs) and register their
``/metrics`` with a Prometheus of the test's own (fresh data: nothing from an earlier
run can answer; the project's alert rules loaded). One poison record on the frames
topic makes the detector dead-letter it, as happens on a site (produced before the
cameras start: first in its partition, not behind a backlog).
Then, polling Prometheus' HTTP API until every answer is in (or the deadline):

* every panel query of every dashboard (variables at All, ``$__rate_interval`` at 1m)
  and every template variable must return at least one series, without error;
* every alert rule must be loaded and evaluate with health ``ok``; an alert expression
  that is empty on a healthy pipeline (most are: they fire on trouble) must have data
  for every metric it reads, so a renamed metric or a typo cannot hide as "no alert";
* the dead letter fires ``CrosscamDeadLetters``: an alert proven end to end.

Run: ``pytest -s tests/integration/test_ops_live_queries.py`` (about a minute on a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from crosscam.demo import _live_cameras_file
from crosscam.run import build_specs
from crosscam.supervisor import Supervisor
from devstack import faults
from devstack import stack as stack_mod
from devstack.stack import StackConfig
from evaluation import live_scoring
from reid.topology import Topology
from schemas.topics import FRAMES, TOPICS
from service.kafka import ensure_topics
from service.settings import KafkaSettings
from tests.stack_fixtures import free_port, server_state_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CAMERAS = 2
SCENARIO_FRAMES = 120
"""17 s of video per camera at 7 fps, looped: people enter and leave, so tracks end,
tracklets reach ReID and identities are made within the first loop."""
DEADLINE_S = 240.0
"""From the stages' start to every query answered, on a loaded 2-core machine (model
loading alone takes 10-30 s); a healthy run needs about a minute and a half."""
POLL_S = 3.0
METRIC_RE = re.compile(r"\b(crosscam[_:][a-z0-9_:]+|up)\b")


def prom_query(base: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector (or a scalar as one sample) for ``expr``; raises on a query error."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    if body["status"] != "success":
        raise AssertionError(f"{expr}: {body}")
    data = body["data"]
    return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]


def prom_get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read())["data"]


def substitute(expr: str) -> str:
    """As Grafana sends it: variables at All (``.*``), ``$__rate_interval`` at 1m."""
    return re.sub(r"\$\{?(?!__)\w+\}?", ".*", expr.replace("$__rate_interval", "1m"))


def dashboard_queries() -> dict[str, str]:
    out = {}
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for p in dash["panels"]:
            for t in p["targets"]:
                out[f"{dash['uid']} / {p['title']} / {t['refId']}"] = substitute(t["expr"])
        for v in dash["templating"]["list"]:
            m = re.fullmatch(r"label_values\((\w+), ?(\w+)\)", v["query"]["query"])
            assert m, v
            # label_values(metric, label) is the label's values on series of metric
            out[f"{dash['uid']} / variable {v['name']}"] = f"count by ({m[2]}) ({m[1]})"
    return out


def alert_rules() -> dict[str, str]:
    rules = {}
    for path in sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for r in group["rules"]:
                if "alert" in r:
                    rules[r["alert"]] = r["expr"]
    return rules


def missing_answers(base: str) -> list[str]:
    """What is not answered yet: empty panel queries, and empty alerts with an unfed metric."""
    missing = [
        f"panel {w}: no data" for w, q in dashboard_queries().items() if not prom_query(base, q)
    ]
    for name, expr in alert_rules().items():
        if prom_query(base, expr):
            continue  # the alert fires (or would): its expression sees data
        for metric in sorted(set(METRIC_RE.findall(expr))):
            if not prom_query(base, f'count({{__name__="{metric}"}})'):
                missing.append(f"alert {name}: quiet, and its metric {metric} has no data")
    return missing


@pytest.fixture
def private_prometheus(stack: StackConfig) -> Iterator[StackConfig]:
    """A Prometheus of this test alone (fresh data: nothing left from an earlier run counts)."""
    with server_state_dir("prometheus") as state:
        cfg = replace(stack, state_dir=state, prometheus_port=free_port())
        stack_mod.prometheus_start(cfg)
        try:
            yield cfg
        finally:
            stack_mod.prometheus_stop(cfg)


@pytest.fixture
def live_pipeline(
    stack: StackConfig,
    private_prometheus: StackConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Supervisor]]:
    """Two looping live cameras and every stage but the gallery, scraped by that Prometheus."""
    from evaluation.scenario import build_scenario

    t0 = time.monotonic()
    bootstrap, redis_url = stack_mod.kafka_bootstrap(stack), stack_mod.redis_url(stack)
    asyncio.run(live_scoring.reset_state(bootstrap, redis_url))
    # Poison first in its partition, so the detector meets it at once, not behind a backlog.
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), list(TOPICS)))
    faults.poison(bootstrap, FRAMES, "ops-poison")
    scn = tmp_path / "scenario"
    build_scenario(scn, cameras=CAMERAS, max_frames=SCENARIO_FRAMES)
    topo = Topology.load(scn / "cameras.toml")
    cameras_file, _ = _live_cameras_file(scn, tmp_path)
    monkeypatch.setenv(
        "CROSSCAM_METRICS_TARGETS_DIR", str(stack_mod.prometheus_targets_dir(private_prometheus))
    )
    monkeypatch.setenv("CROSSCAM_INGEST__BACKOFF_INITIAL_S", "0.2")
    monkeypatch.setenv("CROSSCAM_INGEST__BACKOFF_MAX_S", "1.0")
    specs = build_specs(
        cameras_file,
        only={"ingest", "detector", "tracker", "reid"},
        data_dir=tmp_path / "reid",
        metrics_base_port=faults.free_port_range(8),
        reid_api_port=free_port(),
    )
    for cam in topo.cameras:
        stack_mod.rtsp_publish(cam, topo.source_path(cam), loop=True, cfg=stack)
    sup = Supervisor(specs, log_dir=tmp_path / "logs")
    stop = threading.Event()
    thread = threading.Thread(target=sup.run, args=(stop,), daemon=True)
    thread.start()
    print(f"pipeline starting after {time.monotonic() - t0:.1f} s of set-up", flush=True)
    try:
        yield stack_mod.prometheus_url(private_prometheus), sup
    finally:
        stop.set()
        thread.join(120)
        for cam in topo.cameras:
            stack_mod.rtsp_unpublish(cam, cfg=stack)


def test_every_panel_and_alert_query_answers_on_live_data(live_pipeline: Any) -> None:
    prom, sup = live_pipeline
    t0 = time.monotonic()
    rules = prom_get(prom, "/api/v1/rules")
    loaded = {r["name"]: r for g in rules["groups"] for r in g["rules"] if r["type"] == "alerting"}
    assert set(alert_rules()) <= set(loaded), "Prometheus did not load every alert rule"
    missing: list[str] = []
    last: tuple[int, bool] | None = None
    while time.monotonic() - t0 < DEADLINE_S:
        missing = missing_answers(prom)
        firing = prom_query(prom, 'ALERTS{alertname="CrosscamDeadLetters"}')
        state = (len(missing), bool(firing))
        if state != last:
            print(f"{time.monotonic() - t0:6.1f} s: {len(missing)} unanswered, dead-letter "
                  f"alert {'on' if firing else 'off'}", flush=True)  # fmt: skip
            last = state
        if not missing and firing:
            break
        time.sleep(POLL_S)
    elapsed = time.monotonic() - t0
    print(json.dumps({"seconds": round(elapsed, 1), "queries": len(dashboard_queries()),
                      "alerts": len(alert_rules()), "restarts": sup.restarts()}))  # fmt: skip
    assert not missing, "\n".join(missing)
    rules = prom_get(prom, "/api/v1/rules")
    bad = [(r["name"], r.get("lastError")) for g in rules["groups"] for r in g["rules"]
           if r["health"] != "ok"]  # fmt: skip
    assert not bad, bad
    dead = prom_query(prom, 'ALERTS{alertname="CrosscamDeadLetters"}')
    assert [a["metric"]["stage"] for a in dead] == ["detector"], dead
