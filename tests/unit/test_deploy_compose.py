"""The site's docker-compose file: it parses, it is safe by default, and it stays in step
with the code (commands and settings the stages really accept, generated ingest services).

No Docker engine runs here: ``docker-compose config`` (Debian's docker-compose, installed
by deploy/install-system.sh) parses and interpolates the files exactly as ``up`` would.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("KAFKA_SASL_PASSWORD", "REDIS_PASSWORD", "QDRANT_API_KEY", "GRAFANA_ADMIN_PASSWORD")
STAGES = {
    "detector": "detector.settings:DetectorSettingsRoot",
    "detector-cpu": "detector.settings:DetectorSettingsRoot",
    "tracker": "tracker.settings:TrackerSettingsRoot",
    "reid": "reid.settings:ReidSettingsRoot",
    "gallery": "gallery.settings:GallerySettings",
}
INTERNAL_ONLY = ("kafka", "redis", "qdrant", "prometheus", "reid", "tracker", "detector")


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: run deploy/install-system.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [exe, "--project-directory", str(ROOT), "--env-file", str(env_file), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def env_file(tmp: Path, profiles: str = "gpu", secrets: bool = True) -> Path:
    text = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        value = f"test-{name.lower().replace('_', '-')}-0af3" if secrets else ""
        text = re.sub(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
    text = re.sub(r"^COMPOSE_PROFILES=.*$", f"COMPOSE_PROFILES={profiles}", text, flags=re.M)
    path = tmp / f"{profiles}-{secrets}.env"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved compose model (base + per-camera ingest), GPU profile."""
    proc = compose(env_file(tmp_path_factory.mktemp("env")), "config")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = yaml.safe_load(proc.stdout)
    return data


def test_compose_config_quiet_passes_with_secrets(tmp_path: Path) -> None:
    for profiles in ("gpu", "cpu"):
        proc = compose(env_file(tmp_path, profiles), "config", "-q")
        assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    proc = compose(env_file(tmp_path, secrets=False), "config", "-q")
    assert proc.returncode != 0
    assert "in .env" in proc.stderr


def test_only_gallery_and_grafana_are_published(config: dict[str, Any]) -> None:
    published = {name for name, svc in config["services"].items() if svc.get("ports")}
    assert published == {"gallery", "grafana"}
    grafana = config["services"]["grafana"]["ports"]
    assert grafana == ["127.0.0.1:3000:3000/tcp"], "Grafana binds loopback unless told otherwise"


def test_servers_sit_on_the_internal_network_only(config: dict[str, Any]) -> None:
    assert config["networks"]["backend"].get("internal") is True
    for name in INTERNAL_ONLY:
        nets = set(config["services"][name].get("networks", {}))
        assert nets == {"backend"}, f"{name} is on {nets}"
    kafka_env = config["services"]["kafka"]["environment"]
    assert "BROKER:SASL_PLAINTEXT" in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert "LOCAL://127.0.0.1:" in kafka_env["KAFKA_LISTENERS"], "plaintext only on loopback"
    assert config["services"]["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]


def test_every_service_has_a_health_check_and_the_detector_a_gpu(config: dict[str, Any]) -> None:
    services = config["services"]
    for name, svc in services.items():
        if name != "kafka-init":
            assert "healthcheck" in svc, f"{name} has no health check"
    devices = services["detector"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in services["detector-cpu"]
    for name in ("kafka", "qdrant", "reid", "prometheus", "grafana"):
        vols = services[name].get("volumes", [])
        named = [v for v in vols if not str(v).startswith("/")]
        assert named, f"{name} keeps no data in a named volume"


def _stage_argv_parses(argv: list[str]) -> argparse.Namespace:
    """The crosscam CLI's own parsing (crosscam.cli.main without running the command)."""
    from crosscam import cli

    parser = cli._build_parser()
    known, _ = parser.parse_known_args(argv)
    module = importlib.import_module(known._module)
    sub = parser
    for name in known._path:
        action = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
        sub = action.choices[name]
    cli._entry(module, known._path, "configure")(sub)  # type: ignore[operator]
    return parser.parse_args(argv)


def test_stage_commands_and_settings_are_what_the_stages_accept(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.settings import load_settings

    stages = {n: s for n, s in config["services"].items() if n in STAGES or n.startswith("ingest-")}
    assert {"ingest-lobby", "ingest-corridor"} <= set(stages)
    for name, svc in stages.items():
        _stage_argv_parses([str(a) for a in svc["command"]])
        for key in [k for k in os.environ if k.startswith("CROSSCAM_")]:
            monkeypatch.delenv(key)
        for key, value in svc["environment"].items():
            monkeypatch.setenv(key, str(value))
        target = STAGES.get(name, "ingest.settings:IngestSettingsRoot")
        module, _, cls = target.partition(":")
        root = load_settings(getattr(importlib.import_module(module), cls))
        kafka = getattr(root, "kafka", None)
        if kafka is not None:
            assert kafka.security_protocol == "SASL_PLAINTEXT"
            assert kafka.sasl_password.get_secret_value().startswith("test-")


def test_generated_site_files_match_the_example_cameras_file(tmp_path: Path) -> None:
    site = _load_site()
    files = site.render(ROOT / "deploy" / "cameras.example.toml")
    for rel, text in files.items():
        assert (ROOT / rel).read_text() == text, (
            f"{rel} is out of date: run python deploy/site.py deploy/cameras.example.toml"
        )
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert site.STAGE_ENV == base["x-stage-env"], "ingest services must get x-stage's env"


def test_site_generator_refuses_a_file_source(tmp_path: Path) -> None:
    site = _load_site()
    bad = tmp_path / "cameras.toml"
    bad.write_text('[[cameras]]\nid = "cam0"\nsource = "cam0.mp4"\n')
    with pytest.raises(ValueError, match="not a URL"):
        site.render(bad)


def test_site_generator_writes_every_file_and_refuses_colliding_ids(tmp_path: Path) -> None:
    site = _load_site()
    assert site.main([str(ROOT / "deploy" / "cameras.example.toml"), "--out", str(tmp_path)]) == 0
    for rel in site.render(ROOT / "deploy" / "cameras.example.toml"):
        assert (tmp_path / rel).is_file(), rel
    bad = tmp_path / "collide.toml"
    bad.write_text(
        '[[cameras]]\nid = "cam_a"\nsource = "rtsp://h/a"\n'
        '[[cameras]]\nid = "cam-a"\nsource = "rtsp://h/b"\n'
    )
    assert site.main([str(bad), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def _load_site() -> Any:
    spec = importlib.util.spec_from_file_location("crosscam_site", ROOT / "deploy" / "site.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dockerfile", ["deploy/Dockerfile", "deploy/Dockerfile.cuda"])
def test_dockerfiles_copy_every_package_and_run_unprivileged(dockerfile: str) -> None:
    import tomllib

    text = (ROOT / dockerfile).read_text()
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.MULTILINE))
    for src in copied:
        assert (ROOT / src).exists(), f"{dockerfile}: COPY {src} does not exist"
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    assert packages <= copied, f"{dockerfile} misses {packages - copied}"
    assert re.search(r"^USER (?!root)\S+", text, flags=re.MULTILINE), "runs as root"
    assert "crosscam-healthz" in text
