"""The architecture contract: stages are peers, cores are pure, tooling stands beside.

`.importlinter` holds the contracts; ``lint-imports`` checks them over every
import, function-level ones included. These tests run it, show that it fails
on a violation, check that every module of a stage is classified (core or
service side), and that no import loop exists between modules.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "common",
    "schemas",
    "service",
    "ingest",
    "detector",
    "tracker",
    "reid",
    "gallery",
    "crosscam",
    "evaluation",
    "bench",
    "devstack",
)
STAGES = ("ingest", "detector", "tracker", "reid")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# The service side of each stage: Kafka/Redis/HTTP/Prometheus wrappers, settings and
# commands. Every other module of a stage is its pure core and is listed in the
# pure-cores contract of .importlinter.
SERVICE_SIDE = {
    "ingest": {"cli", "metrics", "publish", "service", "settings", "status"},
    "detector": {"metrics", "service", "settings", "stage"},
    "tracker": {"metrics", "service", "settings", "state_store"},
    "reid": {
        "api",
        "cameras_api",
        "erasure_job",
        "export",
        "metrics",
        "operator",
        "operator_api",
        "qdrant_store",
        "retention_job",
        "service",
        "settings",
        "sitemap_api",
        "tail",
        "uploads_api",
    },
}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(cwd / ".importlinter"), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _core_modules() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return set(parser["importlinter:contract:pure-cores"]["source_modules"].split())


def test_contracts_hold() -> None:
    res = _lint_imports(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout and res.stdout.count("KEPT") >= 4


def test_contract_fails_on_a_violation(tmp_path: Path) -> None:
    """A copy of the tree with one stage importing another must fail the check."""
    for pkg in PACKAGES:
        shutil.copytree(
            ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("static", "*.pyc")
        )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    core = tmp_path / "tracker" / "kalman.py"
    core.write_text(core.read_text() + "\nimport detector.decode  # a stage importing a stage\n")
    core = tmp_path / "reid" / "linker.py"
    core.write_text(core.read_text() + "\nimport redis  # a core importing Redis\n")
    res = _lint_imports(tmp_path)
    assert res.returncode != 0
    assert "Stages never import each other BROKEN" in res.stdout
    assert "Stage cores import no Kafka, Redis" in res.stdout and "reid.linker" in res.stdout


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_module_is_classified(stage: str) -> None:
    modules = {p.stem for p in (ROOT / stage).glob("*.py") if p.stem != "__init__"}
    core = {m.split(".", 1)[1] for m in _core_modules() if m.startswith(stage + ".")}
    assert not core & SERVICE_SIDE[stage], "a module cannot be both core and service side"
    unclassified = modules - core - SERVICE_SIDE[stage]
    assert not unclassified, (
        f"add {sorted(unclassified)} to .importlinter's pure cores or SERVICE_SIDE"
    )


def test_no_import_loops() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    loops = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(imported, module):
                loops.append((module, imported))
    assert not loops, f"import loops: {loops[:5]}"
