"""
### Retrain `{model}` (stub consumer of the drift Asset)

**What it does.** Runs whenever the monitor DAG emits the `{asset}` Asset event, and records
the reason the event carries (which batch, what drifted, where the report is). Training,
evaluation against the champion and promotion replace this stub in the retraining issue.

**When it runs.** Only on Asset events from `monitor__{model}`; it has no time schedule.

**Trigger by hand.** Not needed yet: force retraining from the monitor DAG's trigger form.

**Outputs.** The reasons of the events it consumed, as this task's return value (XCom).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from airflow.sdk import Asset, dag, task

from driftwatch import layout
from driftwatch.config import ModelConfig, load_configs


def build_retrain_dag(cfg: ModelConfig) -> Any:
    retraining_requested = Asset(name=layout.drift_asset_name(cfg), uri=layout.drift_asset_uri(cfg))

    @dag(
        dag_id=f"retrain__{cfg.name}",
        description=f"Retrain {cfg.name} when drift is reported (stub)",
        doc_md=__doc__.format(model=cfg.name, asset=retraining_requested.name),
        schedule=[retraining_requested],
        start_date=datetime.combine(cfg.monitor.start_date, time(), tzinfo=UTC),
        catchup=False,
        tags=["driftwatch", "retrain", cfg.name],
        default_args={"owner": cfg.owner, "retries": cfg.monitor.retries, "retry_delay": timedelta(seconds=30)},
    )
    def retrain() -> None:
        @task
        def record_request(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
            """Collect the reasons carried by the Asset events that triggered this run."""
            requests = []
            for events in (triggering_asset_events or {}).values():
                requests += [dict(event.extra or {}) for event in events]
            print(f"retraining requested for {cfg.name}: {requests}")
            return requests

        record_request()

    return retrain()


for _cfg in load_configs():
    globals()[f"retrain__{_cfg.name}"] = build_retrain_dag(_cfg)
