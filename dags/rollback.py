"""
### Roll back `{model}`: move the champion alias back to an earlier version

**What it does.** Moves the `champion` alias of `{registered}` in the MLflow registry back to
the version you name (by default the previous champion), after checking that its artifact's
sha256 still matches the one recorded at registration and that it was never rejected. It
records who did it and why on both versions' tags and in the registry's champion history,
makes that version's training data the drift reference again, and emails {recipients}.

**When it runs.** Only by hand: it has no schedule.

**Trigger by hand.** *Trigger DAG* → `version` (empty for the previous champion) and `reason`
(required).

**Outputs.** The alias move and tags in MLflow; `reference/current.json` in S3; one email. The
rollback and its reason appear in the champion history on the **Model monitoring** page.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from driftwatch.config import ModelConfig, load_configs
from driftwatch_airflow.hooks import mlflow_tracking_uri, s3_client, send_email


def build_rollback_dag(cfg: ModelConfig) -> Any:
    @dag(
        dag_id=f"rollback__{cfg.name}",
        description=f"Move the champion of {cfg.name} back to an earlier version",
        doc_md=__doc__.format(
            model=cfg.name, registered=cfg.registry.registered_model, recipients=", ".join(cfg.alerts.recipients)
        ),
        schedule=None,
        start_date=datetime.combine(cfg.monitor.start_date, time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["driftwatch", "rollback", cfg.name],
        default_args={"owner": cfg.owner, "retries": 2, "retry_delay": timedelta(seconds=15)},
        params={
            "version": Param(
                None,
                type=["null", "string"],
                pattern=r"^[0-9]+$",
                title="Version",
                description="Model version to make champion again; empty means the previous champion.",
            ),
            "reason": Param(
                "",
                type="string",
                minLength=5,
                maxLength=500,
                title="Reason",
                description="Why the champion is rolled back; recorded on the versions' tags and in the email.",
            ),
        },
    )
    def rollback() -> None:
        @task(multiple_outputs=False)
        def move_alias(params: dict[str, Any], run_id: str, dag_run: Any = None) -> dict[str, Any]:
            """Move the champion alias back, record who and why, restore that version's reference."""
            from driftwatch.retraining import rollback_champion

            user = getattr(dag_run, "triggering_user_name", None) or "unknown user"
            return rollback_champion(
                s3_client(cfg.storage.aws_conn_id),
                cfg,
                mlflow_tracking_uri(cfg.registry.mlflow_conn_id),
                to_version=params.get("version"),
                actor=f"{user} (airflow run {run_id})",
                reason=params["reason"],
            )

        @task
        def notify(outcome: dict[str, Any]) -> list[str]:
            """Email who rolled back, between which versions, and why."""
            from driftwatch.alerts import rollback_email

            # The outbox keeps an undelivered email in S3 and stops a cleared rerun sending it twice.
            outbox = (s3_client(cfg.storage.aws_conn_id), cfg)
            return send_email(cfg.alerts.smtp_conn_id, rollback_email(cfg, outcome), outbox=outbox)

        notify(move_alias())

    return rollback()


for _cfg in load_configs():
    globals()[f"rollback__{_cfg.name}"] = build_rollback_dag(_cfg)
