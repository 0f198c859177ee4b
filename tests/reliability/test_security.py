"""Security: no credentials in the repo, least-privilege S3 access, PII kept out of every output, loopback only."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from driftwatch import demo_data, history, layout, pipeline, registry, seeding, storage
from driftwatch.artifacts import MANIFEST, WRITING, read_manifest
from tests.reliability.support import clean_frame, land, monitor_steps, pii_values, run_dag

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "docs" / "iam-policy.json"

# What a leaked credential looks like; built so that this file does not match itself.
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Fernet key": re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9=])"),
    "secret assignment": re.compile(
        r"""(?i)(?:password|passwd|secret_access_key|secret_key|api_key|auth_token)["']?\s*[:=]\s*["']([^"'\s<>{}$]{8,})["']"""
    ),
}
# Values that look like credentials but are not: moto and the tests accept any key pair.
NOT_SECRETS = {"test-secret", "test-key"}


def tracked_text_files() -> list[Path]:
    """Every file git tracks or would add (ignored files, such as .env and .state, excluded)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    files = []
    for name in filter(None, listed):
        path = REPO / name.decode()
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:
            files.append(path)
    return files


def find_secrets(text: str) -> list[str]:
    found = []
    for label, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(match.lastindex or 0)
            if value not in NOT_SECRETS:
                found.append(f"{label}: {value[:6]}…")
    return found


def test_no_credentials_in_the_repository(figures):
    planted = (
        'aws_secret_access_key = "' + "wJalrXUtnFEMI/K7MDENG" + 'bPxRfiCYzEXAMPLEKEY"\n' + "AKIA" + "Q3EXAMPLE7K2D4LM\n"
    )
    assert len(find_secrets(planted)) == 2, "the detector must catch what it is looking for"
    files = tracked_text_files()
    assert len(files) > 50 and REPO / ".env.example" in files
    leaks = {str(p.relative_to(REPO)): found for p in files if (found := find_secrets(p.read_text(errors="replace")))}
    assert not leaks, leaks
    env_example = (REPO / ".env.example").read_text()
    conn_ids = set()
    for path in (REPO / "config" / "models").glob("*.yaml"):
        conn_ids |= set(re.findall(r"\b(?:aws|smtp|mlflow)_conn_id:\s*(\S+)", path.read_text()))
    undocumented = [c for c in sorted(conn_ids) if f"AIRFLOW_CONN_{c.upper()}=" not in env_example]
    assert conn_ids and not undocumented, f".env.example does not document {undocumented}"
    figures.add(
        "security",
        "credentials in the repository",
        f"{len(files)} tracked files scanned for {len(SECRET_PATTERNS)} secret patterns: none found; "
        f".env.example documents the {len(conn_ids)} connections the configs use",
    )


# --- least privilege ----------------------------------------------------------------------


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def policy_allows(policy: dict[str, Any], action: str, resource: str, prefix: str | None = None) -> bool:
    """IAM evaluation for one request: an explicit Deny wins, then any Allow, else denied."""
    decisions = set()
    for statement in policy["Statement"]:
        if not any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        condition = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if condition is not None and (prefix is None or not any(fnmatch.fnmatchcase(prefix, c) for c in condition)):
            continue
        decisions.add(statement["Effect"])
    return "Deny" not in decisions and "Allow" in decisions


OPERATION_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
}


def record_requests(client: Any) -> list[tuple[str, str, str]]:
    """Every S3 request the client makes, as (IAM action, resource ARN, list prefix)."""
    seen: list[tuple[str, str, str]] = []

    def on_call(params: dict[str, Any], model: Any, **_: Any) -> None:
        bucket = params.get("Bucket", "")
        action = OPERATION_ACTIONS.get(model.name, f"s3:{model.name}")
        if model.name == "ListObjectsV2":
            seen.append((action, f"arn:aws:s3:::{bucket}", params.get("Prefix", "")))
        else:
            seen.append((action, f"arn:aws:s3:::{bucket}/{params['Key']}", ""))
        if model.name == "CopyObject":
            source = params["CopySource"]  # botocore may already have turned it into "bucket/key"
            path = source if isinstance(source, str) else f"{source['Bucket']}/{source['Key']}"
            seen.append(("s3:GetObject", f"arn:aws:s3:::{unquote(path)}", ""))

    client.meta.events.register("before-parameter-build.s3", on_call, unique_id="iam-recorder")
    return seen


def test_iam_policy_allows_exactly_what_the_pipeline_does(bucket, aws_connection, demo_cfg, mail_dir, figures):
    policy = json.loads(POLICY.read_text())
    arn = "arn:aws:s3:::driftwatch-demo/"
    for key in ("incoming/dt=2026-01-01/part-000.csv", "labels/dt=2026-01-01/labels.csv"):
        assert policy_allows(policy, "s3:GetObject", arn + key)
        for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl"):
            assert not policy_allows(policy, action, arn + key), f"{action} allowed on {key}"
    # Delete nothing: no Allow names a delete action (wildcards included), and every delete is denied.
    granted = [a for st in policy["Statement"] if st["Effect"] == "Allow" for a in _listed(st["Action"])]
    deleting = [a for a in granted if fnmatch.fnmatchcase("s3:DeleteObject", a) or a.startswith("s3:Delete")]
    assert not deleting, f"the policy allows deleting: {deleting}"
    for key in (
        "driftwatch/credit_default/history/dt=2026-01-01.json",
        "driftwatch/credit_default/reports/dt=2026-01-01/manifest.json",
        "driftwatch/credit_default/quarantine/dt=2026-01-01/data/part-000.csv",
    ):
        assert not policy_allows(policy, "s3:DeleteObject", arn + key), f"DeleteObject allowed on {key}"
    assert not policy_allows(policy, "s3:PutObject", arn + "mlflow-artifacts/1/model.pkl")
    assert not policy_allows(policy, "s3:ListBucket", "arn:aws:s3:::driftwatch-demo", "")
    assert not policy_allows(policy, "s3:DeleteBucket", "arn:aws:s3:::driftwatch-demo")

    # Run the pipeline's S3 code for a clean batch, a bad batch, a missing one and a retraining
    # request, and check every request it really made against the policy.
    clean = clean_frame(rows=300)
    land(bucket, demo_cfg, "2026-08-01", "part-000.csv", clean.to_csv(index=False).encode())
    land(bucket, demo_cfg, "2026-08-02", "part-000.csv", b"")
    pipeline_requests = record_requests(bucket)  # from here on, only the pipeline's own requests
    summary = monitor_steps(bucket, demo_cfg, "2026-08-01")["summary"]
    pipeline.drift_step(bucket, demo_cfg, "2026-08-01", summary)
    monitor_steps(bucket, demo_cfg, "2026-08-02")
    rerun_from = len(pipeline_requests)
    monitor_steps(bucket, demo_cfg, "2026-08-01")  # a rerun: the manifest is overwritten, never deleted
    reports = layout.report_prefix(demo_cfg, "2026-08-01")
    rerun_puts = [r[1] for r in pipeline_requests[rerun_from:] if r[0] == "s3:PutObject" and reports in r[1]]
    assert rerun_puts and rerun_puts[0].endswith("/" + MANIFEST), f"the rerun wrote {rerun_puts[:1]} first"
    # Validation rewrote the set and drift has not committed it yet: no reader may take it as complete.
    assert storage.read_json(bucket, demo_cfg.storage.bucket, reports + MANIFEST)["status"] == WRITING
    assert read_manifest(bucket, demo_cfg.storage.bucket, reports) is None
    from driftwatch_airflow.webapp import run_report_keys

    run = {"conf": {"batch_date": "2026-08-01"}, "logical_date": None}
    labels = list(run_report_keys([demo_cfg], f"monitor__{demo_cfg.name}", "rerun", run)[1])
    assert labels and all(label.endswith("(report, incomplete)") for label in labels), labels
    pipeline.missing_batch_step(bucket, demo_cfg, "2026-08-03", waited_minutes=1)
    history.record_retraining_request(bucket, demo_cfg, "2026-08-01", "data_drift", "test", "run-1")
    bucket.meta.events.unregister("before-parameter-build.s3", unique_id="iam-recorder")
    denied = sorted({r for r in pipeline_requests if not policy_allows(policy, *r)})
    assert len(pipeline_requests) > 30 and not denied, denied
    actions = {r[0] for r in pipeline_requests}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= actions
    deletes = sorted(r for r in pipeline_requests if r[0].startswith("s3:Delete"))
    assert not deletes, f"the pipeline deleted objects: {deletes}"
    figures.add(
        "security",
        "least-privilege IAM policy (docs/iam-policy.json)",
        f"all {len(pipeline_requests)} S3 requests of a clean, a quarantined, a rerun and a missing batch are "
        "allowed, none of them a delete (a rerun overwrites its manifest with 'writing', which readers and the "
        "run's Reports tab take for an incomplete set); writes on incoming/, labels/, reference/ and every "
        "delete denied",
    )


# --- PII ----------------------------------------------------------------------------------


def test_pii_never_reaches_reports_emails_logs_or_mlflow(
    airflow_db, s3, aws_connection, demo_cfg, mail_dir, monkeypatch, tmp_path, capfd, caplog, figures
):
    """A bootstrap retrain (training data from the PII-carrying reference) and a monitored batch, then
    a scan of every S3 output, every email, the task logs and MLflow's database and artifacts."""
    from retrain import build_retrain_dag

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "http", "host": "x", "extra": {"tracking_uri": tracking}}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    registry.ensure_experiment(tracking, demo_cfg.registry.experiment, artifact_location=str(tmp_path / "artifacts"))
    reference = demo_data.generate_reference(seed=5, rows=1500)
    assert set(demo_cfg.dataset.pii_columns) <= set(reference.columns), "the reference must carry PII to test this"
    seeding.write_reference(s3, demo_cfg, reference)
    batch = clean_frame(rows=400)
    land(s3, demo_cfg, "2026-09-01", "part-000.csv", batch.to_csv(index=False).encode())
    markers = pii_values(reference) + pii_values(batch)

    _, states = run_dag(build_retrain_dag(demo_cfg), conf={"reason": "PII scan"})
    assert states["apply_decision"] == "success", states
    from monitor import build_monitor_dag

    _, states = run_dag(build_monitor_dag(demo_cfg), date(2026, 9, 1))
    assert states["compute_drift"] == "success" and states["score_batch"] == "success", states

    places: dict[str, bytes] = {
        key: storage.read_bytes(s3, demo_cfg.storage.bucket, key)
        for key in (o.key for o in storage.list_objects(s3, demo_cfg.storage.bucket, demo_cfg.storage.output_prefix))
    }
    places |= {f"email {m['Subject']}": m.as_bytes() for m in _messages(mail_dir)}
    captured = capfd.readouterr()
    places["task logs"] = (captured.out + captured.err + caplog.text).encode()
    assert b"train_challenger" in places["task logs"], "task logs were not captured"
    places["MLflow database"] = (tmp_path / "mlflow.db").read_bytes()
    artifacts = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert artifacts, "MLflow stored no artifacts: the scan would prove nothing"
    places |= {f"MLflow artifact {p.relative_to(tmp_path)}": p.read_bytes() for p in artifacts}
    leaks = {where: [m for m in markers if m.encode() in data][:3] for where, data in places.items()}
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, leaks
    figures.add(
        "security",
        "PII columns (applicant_name, email) from the reference and a batch",
        f"absent from {len(places)} places: every S3 output (reports, staged and training data, history), "
        f"{sum(k.startswith('email') for k in places)} email(s), the task logs, MLflow's database and "
        f"{len(artifacts)} MLflow artifacts",
    )


def _messages(folder: Path) -> list[Any]:
    from devstack.smtp_sink import read_messages

    return read_messages(folder)


# --- embedded stack -----------------------------------------------------------------------


def test_embedded_stack_binds_loopback_and_generates_credentials_per_install(tmp_path, monkeypatch, figures):
    from devstack import stack

    monkeypatch.setenv("DRIFTWATCH_STATE_DIR", str(tmp_path / "one"))
    ports = stack.Ports(airflow=18080, s3=19555, smtp=18025, mlflow=15500)
    commands = stack._commands(stack.paths(), ports)
    hosts = {
        name: [argv[i + 1] for i, arg in enumerate(argv) if arg in ("-H", "--host")] for name, argv in commands.items()
    }
    assert all(h == ["127.0.0.1"] for name, h in hosts.items() if name != "airflow"), hosts
    env = stack.airflow_env(ports)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "False"
    urls = [v for k, v in env.items() if v.startswith("http")] + [
        json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"]
    ]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls), urls
    first = stack.load_secrets()
    monkeypatch.setenv("DRIFTWATCH_STATE_DIR", str(tmp_path / "two"))
    second = stack.load_secrets()
    assert all(first[k] != second[k] for k in first), "two installs share a secret"
    assert (tmp_path / "one" / "secrets.json").stat().st_mode & 0o777 == 0o600
    shipped = " ".join(p.read_text(errors="replace") for p in tracked_text_files())
    assert not [v for v in first.values() if v in shipped]
    figures.add(
        "security",
        "embedded stack: loopback only, credentials per install",
        f"{len(commands)} services bind or point at 127.0.0.1 only; {len(first)} secrets generated per install "
        "(two installs share none, file mode 0600); none appears in the repository",
    )
