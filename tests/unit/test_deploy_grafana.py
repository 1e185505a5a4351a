"""Grafana dashboards (provisioned JSON): structure, data source uids, variables, and
every query's PromQL syntax (through ``promtool check rules``, offline).

Grafana itself cannot be installed here; tests/integration/test_ops_live_queries.py
runs the same queries against a live Prometheus fed by the pipeline.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
REQUIRED = {"crosscam-overview", "crosscam-camera", "crosscam-models"}
VAR_RE = re.compile(r"\$(?:\{)?(\w+)")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def datasource_uids() -> set[str]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    return {d["uid"] for d in doc["datasources"]}


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target."""
    return [
        (f"{dash['uid']} / {p['title']} / {t['refId']}", t["expr"])
        for p in dash["panels"]
        for t in p.get("targets", [])
    ]


def test_the_three_dashboards_are_provisioned() -> None:
    uids = {load(p)["uid"] for p in DASHBOARDS}
    assert REQUIRED <= uids
    assert len(uids) == len(DASHBOARDS), "dashboard uids must be unique"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "crosscam.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"./deploy/grafana/dashboards:{path}:ro" in compose, "compose mounts another folder"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    dash = load(path)
    uids = datasource_uids()
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert key in dash, f"{path.name}: no {key}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "table", "gauge"}
        assert panel["datasource"]["uid"] in uids, f"{panel['title']}: unknown data source"
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, f"{panel['title']}: width"
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] in uids
    variables = {v["name"] for v in dash["templating"]["list"]}
    for v in dash["templating"]["list"]:
        assert v["datasource"]["uid"] in uids
        assert re.fullmatch(r"label_values\(\w+, ?\w+\)", v["query"]["query"]), v["name"]
    for where, expr in queries(dash):
        used = {m for m in VAR_RE.findall(expr) if not m.startswith("__")}
        assert used <= variables, f"{where}: undefined variable(s) {used - variables}"


def substitute(expr: str) -> str:
    """A query as Grafana sends it: every variable at All (.*), the rate interval at 1m."""
    return re.sub(r"\$\{?(?!__)\w+\}?", ".*", expr.replace("$__rate_interval", "1m"))


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: run deploy/install-system.sh"
    rules = [
        {"record": f"check:q{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(q for p in DASHBOARDS for q in queries(load(p)))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
