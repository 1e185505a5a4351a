"""Alert rules and Prometheus configs: promtool checks and unit tests, and the runbook.

``promtool test rules`` feeds synthetic series to every alert
(deploy/prometheus/tests/alerts_test.yml): each fires when it should and stays
quiet on a healthy signal. promtool comes with Debian's ``prometheus`` package
(deploy/install-system.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
CONFIGS = [
    PROM / "prometheus.yml",
    ROOT / "deploy" / "compose" / "prometheus.yml",
    ROOT / "deploy" / "k8s" / "prometheus.yml",
]

REQUIRED_ALERTS = {
    "CrosscamCameraOffline",
    "CrosscamConsumerLagGrowing",
    "CrosscamMatchLatencyHigh",
    "CrosscamDeadLetters",
    "CrosscamStageDown",
    "CrosscamDetectorOnCpu",
    "CrosscamVectorStoreNearLimit",
    "CrosscamDiskNearFull",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: run deploy/install-system.sh (Debian package prometheus)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> list[dict[str, object]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def test_rules_pass_promtool_check() -> None:
    assert RULE_FILES
    proc = promtool("check", "rules", *map(str, RULE_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_pass_their_promtool_unit_tests() -> None:
    proc = promtool("test", "rules", str(PROM / "tests" / "alerts_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _as_mounted(config: Path, tmp: Path) -> Path:
    """A site config laid out as it is mounted (rules, and targets if any, beside it)."""
    if config.parent == PROM:
        return config  # the local stack's: its rules/ folder is already beside it
    data = yaml.safe_load(config.read_text())
    for job in data["scrape_configs"]:
        # Debian's promtool is built without Kubernetes discovery; check the rest of the
        # job (relabelling, rules) with a static target in its place.
        sd = job.pop("kubernetes_sd_configs", None)
        if sd is not None:
            assert sd == [{"role": "pod", "namespaces": {"names": ["crosscam"]}}], sd
            job["static_configs"] = [{"targets": ["pod.crosscam:9400"]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(data))
    shutil.copytree(PROM / "rules", tmp / "rules")
    if (config.parent / "targets").is_dir():
        shutil.copytree(config.parent / "targets", tmp / "targets")
    return tmp / "prometheus.yml"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_prometheus_configs_pass_promtool_check(config: Path, tmp_path: Path) -> None:
    proc = promtool("check", "config", str(_as_mounted(config, tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rule files found" in proc.stdout, "the config must load the alert rules"


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    names = {str(r["alert"]) for r in alert_rules()}
    assert REQUIRED_ALERTS <= names, REQUIRED_ALERTS - names
    tests = (PROM / "tests" / "alerts_test.yml").read_text()
    untested = {n for n in names if f"alertname: {n}" not in tests}
    assert not untested, f"alerts without a promtool unit test: {untested}"


def _runbook_text() -> str:
    """The README, and the proposed operations text until it is merged into the README."""
    proposal = ROOT / "docs-proposals" / "ops.md"
    extra = proposal.read_text() if proposal.exists() else ""
    return (ROOT / "README.md").read_text() + "\n" + extra


def test_every_alert_has_a_summary_and_a_runbook_entry() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", _runbook_text(), flags=re.MULTILINE)
    }
    for rule in alert_rules():
        ann = rule.get("annotations")
        assert isinstance(ann, dict), rule
        assert ann.get("summary"), f"{rule['alert']}: no summary"
        anchor = str(ann.get("runbook", "")).partition("#")[2]
        assert anchor in headings, f"{rule['alert']}: runbook anchor #{anchor} has no heading"
