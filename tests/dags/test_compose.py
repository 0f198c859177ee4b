"""The production stack's docker-compose.yaml and Dockerfile, checked without a Docker engine.

`docker-compose config` (Debian's docker-compose package, v1) validates and renders the file
with a throwaway env file; the rendered result is then checked for the stack's shape. Where
docker-compose is missing and the test runs as root it installs the Debian package; if that is
impossible the test fails and says how to install it (it never skips).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCS = REPO / "docs" / "production.md"

#: Every secret the stack needs; each must come from .env through ${VAR:?message}.
REQUIRED_SECRETS = {
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "POSTGRES_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "DRIFTWATCH_S3_ACCESS_KEY",
    "DRIFTWATCH_S3_SECRET_KEY",
}
AIRFLOW_SERVICES = {
    "airflow-init": None,
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
ONE_SHOT = {"airflow-init", "postgres-init", "minio-init"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|FERNET_KEY|SECRET_KEY|ACCESS_KEY|ACCESS_KEY_ID|AUTH|TOKEN)$")
REQUIRED_REF = re.compile(r"^\$\{([A-Z0-9_]+):\?[^}]+\}$")


def compose_text() -> str:
    """docker-compose.yaml without its comment lines (they may quote the ${VAR:?...} syntax)."""
    return "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))


def variables(pattern: str = r"(?::[-?][^}]*)?") -> set[str]:
    """Names interpolated by Compose (``$${X}`` is an escaped, literal ``${X}`` for the shell)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)" + pattern + r"\}", compose_text()))


def sentinel(name: str) -> str:
    return f"sentinel-{name.lower().replace('_', '-')}-4f1c"


def _compose_command() -> list[str]:
    if exe := shutil.which("docker-compose"):
        return [exe]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    how = "apt-get update && apt-get install -y docker-compose (Debian's package, Compose v1)"
    if os.geteuid() != 0:
        pytest.fail(f"docker-compose is not installed and this test is not root: {how}", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker-compose"]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not install docker-compose ({' '.join(argv)}: {exc}); run: {how}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"could not install docker-compose: `{' '.join(argv)}` exited {done.returncode}:\n"
                f"{(done.stdout + done.stderr)[-1500:]}\nrun: {how}",
                pytrace=False,
            )
    if exe := shutil.which("docker-compose"):
        return [exe]
    pytest.fail(f"docker-compose still missing after installing the package; run: {how}", pytrace=False)


@pytest.fixture(scope="module")
def compose_cmd() -> list[str]:
    return _compose_command()


def run_config(
    compose_cmd: list[str], tmp_path: Path, values: dict[str, str], *extra: str
) -> subprocess.CompletedProcess:
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    # A clean environment: the shell's variables take precedence over --env-file in Compose.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [*compose_cmd, "-f", str(COMPOSE), "--env-file", str(env_file), "config", *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture(scope="module")
def rendered(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("compose")
    values = {name: sentinel(name) for name in REQUIRED_SECRETS}
    quiet = run_config(compose_cmd, tmp, values, "-q")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    full = run_config(compose_cmd, tmp, values)
    assert full.returncode == 0, full.stdout + full.stderr
    return yaml.safe_load(full.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # PyYAML resolves the <<: merge keys


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --------------------------------------------------------------------------- validation


def test_config_is_valid_with_every_secret_set(rendered: dict[str, Any]) -> None:
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis", "minio", "minio-init", "mlflow", "mailpit"} <= set(
        services(rendered)
    )


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_a_missing_secret_stops_compose_with_its_name(compose_cmd: list[str], tmp_path: Path, missing: str) -> None:
    values = {name: sentinel(name) for name in REQUIRED_SECRETS if name != missing}
    done = run_config(compose_cmd, tmp_path, values, "-q")
    assert done.returncode != 0, f"compose accepted a config without {missing}"
    assert f"set {missing} in .env" in done.stdout + done.stderr


def test_secrets_are_only_ever_variable_references(raw: dict[str, Any]) -> None:
    text = compose_text()
    assert variables(r":\?[^}]*") == REQUIRED_SECRETS
    for name, svc in services(raw).items():
        for key, value in env_of(svc).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_REF.match(value), f"{name}: {key} must be ${{VAR:?...}}, not a literal"
            # Credentials inside URLs (user:password@host) must be references too.
            for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", value):
                assert REQUIRED_REF.match(password), f"{name}: {key} embeds a literal password"
            if key.startswith("AIRFLOW_CONN_"):
                conn = json.loads(value)
                for field in ("login", "password"):
                    if field in conn:
                        assert REQUIRED_REF.match(conn[field]), f"{name}: {key}.{field} is a literal"
    for literal in ("airflow:airflow@", "minioadmin", "_PIP_ADDITIONAL_REQUIREMENTS", "changeme"):
        assert literal not in text, f"{literal!r} in docker-compose.yaml"


def test_secrets_reach_the_services_from_the_env_file(rendered: dict[str, Any]) -> None:
    svc = services(rendered)
    api = env_of(svc["airflow-apiserver"])
    assert api["AIRFLOW__CORE__FERNET_KEY"] == sentinel("AIRFLOW_FERNET_KEY")
    assert api["AIRFLOW__API_AUTH__JWT_SECRET"] == sentinel("AIRFLOW_JWT_SECRET")
    assert api["AIRFLOW__API__SECRET_KEY"] == sentinel("AIRFLOW_API_SECRET_KEY")
    assert sentinel("POSTGRES_PASSWORD") in api["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert sentinel("REDIS_PASSWORD") in api["AIRFLOW__CELERY__BROKER_URL"]
    aws = json.loads(api["AIRFLOW_CONN_AWS_DEFAULT"])
    assert (aws["login"], aws["password"]) == (
        sentinel("DRIFTWATCH_S3_ACCESS_KEY"),
        sentinel("DRIFTWATCH_S3_SECRET_KEY"),
    )
    assert env_of(svc["airflow-init"])["AIRFLOW_ADMIN_PASSWORD"] == sentinel("AIRFLOW_ADMIN_PASSWORD")
    assert env_of(svc["minio"])["MINIO_ROOT_PASSWORD"] == sentinel("MINIO_ROOT_PASSWORD")
    assert sentinel("MLFLOW_DB_PASSWORD") in env_of(svc["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    # The components that must agree on secrets do.
    airflow_envs = [env_of(svc[name]) for name in AIRFLOW_SERVICES]
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert len({e[key] for e in airflow_envs}) == 1, key


# --------------------------------------------------------------------------- shape of the stack


def test_every_service_has_a_healthcheck_or_is_a_one_shot_init(rendered: dict[str, Any]) -> None:
    for name, svc in services(rendered).items():
        if name in ONE_SHOT:
            assert svc.get("restart", "no") == "no", f"{name} is one-shot: it must not restart"
            assert "healthcheck" not in svc
        else:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert svc.get("restart") == "always", f"{name} should restart"


def test_dependencies_wait_for_health_or_completion(rendered: dict[str, Any]) -> None:
    svc = services(rendered)
    for name, service in svc.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, spec in deps.items():
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec.get("condition") == want, f"{name} -> {dep}: {spec}"
    for name in set(AIRFLOW_SERVICES) - {"airflow-init"}:
        assert {"postgres", "redis", "airflow-init"} <= set(svc[name]["depends_on"]), name
    worker = svc["airflow-worker"]["depends_on"]
    assert {"airflow-apiserver", "minio-init", "mlflow", "mailpit"} <= set(worker)
    assert {"postgres-init", "minio-init"} <= set(svc["mlflow"]["depends_on"])


def test_airflow_runs_our_image_with_celery(rendered: dict[str, Any]) -> None:
    svc = services(rendered)
    images = set()
    for name, command in AIRFLOW_SERVICES.items():
        service = svc[name]
        assert Path(service["build"]["context"]).resolve() == REPO, name
        assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
        images.add(service["image"])
        if command:
            got = service["command"] if isinstance(service["command"], str) else " ".join(service["command"])
            assert got == command, name
        env = env_of(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert "/opt/airflow/include" in env["PYTHONPATH"].split(":")
        assert env["DRIFTWATCH_CONFIG_DIR"] == "/opt/airflow/config/models"
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env
        targets = {v.split(":")[1] for v in service["volumes"] if isinstance(v, str)} | {
            v["target"] for v in service["volumes"] if isinstance(v, dict)
        }
        for folder in ("dags", "include", "plugins", "config", "logs"):
            assert f"/opt/airflow/{folder}" in targets, f"{name} does not mount {folder}/"
    assert len(images) == 1, images
    assert svc["mlflow"]["image"] in images and Path(svc["mlflow"]["build"]["context"]).resolve() == REPO
    worker = svc["airflow-worker"]
    assert "container_name" not in worker and not worker.get("ports"), "workers must scale with --scale"


def test_connections_point_at_the_stack_services(rendered: dict[str, Any]) -> None:
    env = env_of(services(rendered)["airflow-worker"])
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["conn_type"] == "aws" and aws["extra"]["endpoint_url"] == "http://minio:9000"
    smtp = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert (smtp["conn_type"], smtp["host"], smtp["port"]) == ("smtp", "mailpit", 1025)
    mlflow = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert (mlflow["conn_type"], mlflow["host"], mlflow["port"]) == ("http", "mlflow", 5000)


def test_backing_services(rendered: dict[str, Any]) -> None:
    svc = services(rendered)
    assert svc["postgres"]["image"].startswith("postgres:")
    assert svc["postgres-init"]["image"] == svc["postgres"]["image"]
    assert "CREATE DATABASE mlflow" in " ".join(svc["postgres-init"]["command"])
    assert svc["redis"]["image"].startswith("redis:")
    assert svc["minio"]["image"].startswith("minio/minio")
    assert svc["minio-init"]["image"].startswith("minio/mc")
    assert "mc mb" in " ".join(svc["minio-init"]["command"])
    assert svc["mailpit"]["image"].startswith("axllent/mailpit")
    mlflow = env_of(svc["mlflow"])
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert mlflow["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert mlflow["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "mlflow" in mlflow["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    # Published ports bind to loopback unless DRIFTWATCH_BIND_ADDRESS says otherwise.
    for name, service in svc.items():
        for port in service.get("ports") or []:
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            assert published.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_dockerfile_extends_the_official_image_at_the_pinned_airflow_version() -> None:
    text = DOCKERFILE.read_text()
    pinned = re.search(r"^apache-airflow==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pinned, "requirements.txt must pin apache-airflow"
    assert f"ARG AIRFLOW_VERSION={pinned[1]}" in text
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", text, re.M)
    assert "ARG PYTHON_VERSION=3.11" in text
    assert re.search(r"^COPY .*requirements\.txt", text, re.M)
    assert '"apache-airflow==${AIRFLOW_VERSION}" -r' in text
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in rules if line and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore must start from an empty context (an allow-list)"
    assert not any(r.lstrip("!").startswith((".env", ".state", ".venv")) for r in rules if r.startswith("!"))


def test_production_docs_list_every_variable() -> None:
    docs = DOCS.read_text()
    missing = sorted(v for v in variables() if v not in docs)
    assert not missing, f"docs/production.md does not mention {missing}"
