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

from typing import Any

from airflow.sdk import dag, task

from driftwatch.config import ModelConfig, load_configs
from driftwatch_airflow import dagkit
from driftwatch_airflow.dagkit import fail_fast


def build_rollback_dag(cfg: ModelConfig) -> Any:
    @dag(
        dag_id=f"rollback__{cfg.name}",
        description=f"Move the champion of {cfg.name} back to an earlier version",
        doc_md=__doc__.format(
            model=cfg.name, registered=cfg.registry.registered_model, recipients=", ".join(cfg.alerts.recipients)
        ),
        schedule=None,
        **dagkit.dag_settings(cfg, "rollback", max_active_runs=1),
        params={
            "version": dagkit.optional_text_param(
                "Version",
                "Model version to make champion again; empty means the previous champion.",
                pattern=r"^[0-9]+$",
            ),
            "reason": dagkit.reason_param(
                "", "Why the champion is rolled back; recorded on the versions' tags and in the email.", min_length=5
            ),
        },
    )
    def rollback() -> None:
        @task(multiple_outputs=False)
        @fail_fast
        def move_alias(params: dict[str, Any], run_id: str, dag_run: Any = None) -> dict[str, Any]:
            """Move the champion alias back, record who and why, restore that version's reference."""
            from driftwatch.retraining import rollback_champion

            user = getattr(dag_run, "triggering_user_name", None) or "unknown user"
            return rollback_champion(
                dagkit.s3(cfg),
                cfg,
                dagkit.tracking_uri(cfg),
                to_version=params.get("version"),
                actor=f"{user} (airflow run {run_id})",
                reason=params["reason"],
            )

        @task
        @fail_fast
        def notify(outcome: dict[str, Any]) -> list[str]:
            """Email who rolled back, between which versions, and why."""
            from driftwatch.alerts import rollback_email

            # The outbox keeps an undelivered email in S3 and stops a cleared rerun sending it twice.
            return dagkit.email(cfg, rollback_email(cfg, outcome))

        notify(move_alias())

    return rollback()


for _cfg in load_configs():
    globals()[f"rollback__{_cfg.name}"] = build_rollback_dag(_cfg)
