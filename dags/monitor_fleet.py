"""
### Monitor the fleet: validate and drift-check one batch date for many models at once

**What it does.** `list_models` reads the model configs (filtered by the `models` Param) and
`monitor_model` is **dynamically mapped** over them: per model it validates the batch
`incoming/dt=<batch_date>/`, quarantines it on a critical failure, else writes the drift report
and the retraining decision, as the per-model `monitor__<model>` DAGs do.

**When to use it.** On demand (`schedule=None`): to (re)check one date across many models, and
as the throughput path measured by `bench/bench_fleet.py` (see docs/scaling.md). It sends **no
emails and emits no Asset events**: the per-model monitor DAGs remain the alerting and
retraining path.

**Trigger.** *Trigger DAG* with `batch_date` (YYYY-MM-DD, required), optionally `models`; or REST
`POST /api/v2/dags/monitor_fleet/dagRuns` `{"logical_date": null, "conf": {"batch_date": "2026-01-05"}}`.

**Outputs.** The same reports and history records as the per-model DAGs, under each model's
`output_prefix`; each mapped task returns `{model, passed, drifted_share, retrain}` (XCom). The run's
**Reports** tab lists every selected model's reports of that date.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from driftwatch.config import load_configs
from driftwatch_airflow import dagkit
from driftwatch_airflow.dagkit import batch_date_of, fail_fast


@dag(
    dag_id="monitor_fleet",
    description="Validate and drift-check one batch date for many models (dynamic task mapping)",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    tags=["driftwatch", "monitor", "fleet"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(hours=2),
    },
    dagrun_timeout=timedelta(hours=6),
    params={
        # No "null" in the type: the trigger form marks the field required and Airflow refuses a
        # run without it, rather than a task failing later.
        "batch_date": Param(
            None,
            type="string",
            format="date",
            title="Batch date",
            description="The batch date (YYYY-MM-DD) to check for every selected model. Required.",
        ),
        "models": Param(
            [],
            type="array",
            items={"type": "string", "enum": [c.name for c in load_configs()]},
            uniqueItems=True,
            title="Models",
            description="Model names to check; empty means every configured model.",
        ),
    },
)
def monitor_fleet() -> None:
    @task
    @fail_fast
    def list_models(params: dict[str, Any]) -> list[str]:
        """The configured model names, filtered by the models Param; checks the batch date early."""
        from driftwatch.config import select_models

        batch_date_of(params, None)
        return select_models(load_configs(), list(params.get("models") or []))

    @task(multiple_outputs=False)
    @fail_fast
    def monitor_model(model: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate one model's batch, then quarantine it or compute drift and the decision."""
        from driftwatch.pipeline import check_batch

        cfg = next(c for c in load_configs() if c.name == model)
        return check_batch(dagkit.s3(cfg), cfg, batch_date_of(params, None))

    monitor_model.expand(model=list_models())


fleet = monitor_fleet()
