"""Helpers shared by the test families.

- Asset events of the DAG-driving families (integration, datasets): :func:`asset_events`.
- A model registered the way the retrain DAG registers one, for the tests that need a champion
  or challenger in MLflow without running the DAG: :func:`register_model`.
- A private embedded stack, driven by the CLI with its own state folder and free ports, for the
  stack test (tests/integration/test_stack.py) and the browser tests (tests/browser/), so that
  neither meets the developer's `make demo` stack (8080, 9555, 8025, 5500) nor another engineer's
  tests: :func:`free_ports`, :func:`private_stack_env`, :func:`run_stack`, and :func:`wait_until`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack import procs
from driftwatch import layout

REPO = Path(__file__).resolve().parents[1]
PORT_VARS = ("DRIFTWATCH_AIRFLOW_PORT", "DRIFTWATCH_S3_PORT", "DRIFTWATCH_SMTP_PORT", "DRIFTWATCH_MLFLOW_PORT")


def asset_events(cfg) -> list[dict]:
    """The extras of every retraining-request Asset event emitted for this model."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == layout.drift_asset_name(cfg))
            .all()
        )
        return [dict(r.extra or {}) for r in rows]


def register_model(cfg, tracking_uri: str, model: Any, example: Any, reason: str) -> dict:
    """Log and register `model` (no params or metrics; `example`'s first rows as its input example)."""
    from driftwatch import registry

    lineage = {"reason": reason}
    return registry.log_and_register(
        cfg, model, tracking_uri=tracking_uri, params={}, metrics={}, lineage=lineage, input_example=example.head(5)
    )


def free_ports(count: int = len(PORT_VARS)) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    return procs.free_ports(count)


def private_stack_env(state_dir: Path, ports: list[int], dags_folder: Path | None = None) -> dict[str, str]:
    """The environment `python -m devstack.stack` needs for a private stack.

    The caller's Airflow, AWS, MLflow and driftwatch settings are dropped: a pytest run sets
    some of its own (a temp AIRFLOW_HOME, a sqlite MLflow) that must not reach the stack.
    """
    prefixes = ("AIRFLOW", "DRIFTWATCH_", "AWS_", "MLFLOW")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({"DRIFTWATCH_STATE_DIR": str(state_dir), **dict(zip(PORT_VARS, map(str, ports), strict=True))})
    if dags_folder is not None:
        env["DRIFTWATCH_DAGS_FOLDER"] = str(dags_folder)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "include"), str(REPO / "plugins"), str(REPO)])
    return env


def run_stack(
    command: str, env: dict[str, str], timeout: float = 420, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `python -m devstack.stack <command>`; with check, raise with its output when it fails."""
    argv = [sys.executable, "-m", "devstack.stack", command]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"devstack.stack {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy, and return that; raise TimeoutError naming
    `what` when it never does. OSError counts as not yet (an API still starting, a DAG not parsed:
    urllib raises HTTPError, an OSError, on its 404)."""

    def attempt() -> Any:
        try:
            return check()
        except OSError:
            return None

    if result := procs.poll_until(attempt, timeout, interval):
        return result
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def eager_policy(cfg):
    """`cfg` with a policy that retrains on one drifted batch, harmful or not, without waiting for labels.

    For the tests of what happens once a retrain is due (alerts, events, records); the policy's
    own rules are tested in tests/unit/test_policy.py and test_monitor_dag.py's sustained drift.
    """
    policy = cfg.retraining.model_copy(
        update={
            "sustained_batches": 1,
            "sustained_window": 1,
            "min_new_labelled_rows": 0,
            "cooldown_days": 0,
            "retrain_on_harmless_drift": True,
        }
    )
    return cfg.model_copy(update={"retraining": policy})
