"""
### Retrain `{model}`: train a challenger, judge it against the champion, promote only a better one

**What it does.**

1. *plan*: records the run as running (for the monitor's retraining policy), then reads why it
   runs (the drift or concept-drift events from the monitor, or this form) and the current
   `champion` in the MLflow registry `{registered}`. With no champion yet it **bootstraps**: the
   first model is trained on the reference data and becomes champion v1. An `as_of` whose
   holdout would fall inside the champion's training window is refused at once (not retried):
   the message names the window and the first `as_of` that works.
2. *assemble_data*: the last {window} validated batches up to `as_of` that have labels, joined
   by id; the latest {holdout} days are the time-based holdout. Both sets, and the two together
   (the drift reference if this challenger is promoted), go to S3 with their sha256.
3. *train_challenger*: a scikit-learn Pipeline (`{estimator}`), logged to MLflow with its
   params, metrics, config hash, git commit, data URIs and digests and the triggering drift
   report, and registered as a new version (alias `challenger`). Inside the model's folder, so
   under the same sha256, goes a label-free performance estimator fitted on its holdout scores.
4. *evaluate*: champion and challenger on the same holdout: `{metric}`, per-class metrics,
   confusion matrix, slices; then the gate (minimum improvement, slice regressions, floor).
   The side-by-side report (HTML and JSON) goes to S3 and to the MLflow run.
5. *smoke_test*: the registered version loaded by its `models:/` URI in a fresh process.
6. *await_approval* (only when approval is required): a person approves in the Airflow UI.
7. *apply_decision*: promote with a compare-and-set (refused if the champion changed since
   evaluation; the new champion's training plus holdout data becomes the drift reference), or
   tag the version as rejected with its reasons. *notify* emails the side-by-side table.
8. *record_finish* (a teardown: it runs whatever happened before it, and the run's state is
   still that of the steps above) records the run as finished, and whether it promoted.

**When it runs.** On the `{asset}` Asset, emitted by `monitor__{model}`; at most one run at
a time.

**Trigger by hand.** *Trigger DAG* → `reason`, `as_of` (last batch date to learn from; default:
the triggering batch, else the day before the run's logical date), `window_days`, `promote:
false` for a dry run, and `require_approval`. A manual run always trains: no drift event is
needed.

**Outputs.** MLflow runs and model versions; `s3://{bucket}/{output}training/<run>/` (data) and
`{output}evaluations/<run>/` (reports, also in the run's **Reports** tab); one email per run;
`{output}policy/retrain-status.json` (running or finished, and the last promotion).
Promotions and rejections, with their reasons, are listed on the **Model monitoring** page.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task

from driftwatch.config import ModelConfig, load_configs
from driftwatch_airflow import dagkit
from driftwatch_airflow.dagkit import fail_fast


def build_retrain_dag(cfg: ModelConfig) -> Any:
    retraining_requested = dagkit.retraining_asset(cfg)
    doc = __doc__.format(
        model=cfg.name,
        registered=cfg.registry.registered_model,
        window=cfg.training.window_days,
        holdout=cfg.training.holdout_days,
        estimator=cfg.training.estimator,
        metric=cfg.evaluation.primary_metric,
        asset=retraining_requested.name,
        bucket=cfg.storage.bucket,
        output=cfg.storage.output_prefix,
    )

    @dag(
        dag_id=f"retrain__{cfg.name}",
        description=f"Train, evaluate and promote {cfg.name} when drift is reported",
        doc_md=doc,
        schedule=[retraining_requested],
        **dagkit.dag_settings(cfg, "retrain", max_active_runs=1),
        params={
            "reason": dagkit.reason_param(
                "manual retraining",
                "Why this model is retrained; recorded on the MLflow run and the model version.",
                min_length=3,
            ),
            "as_of": dagkit.optional_text_param(
                "As of",
                "Last batch date (YYYY-MM-DD) to learn from; default: the triggering batch, else the day before "
                "the run's logical date.",
                format="date",
            ),
            "window_days": dagkit.bounded_param(
                cfg.training.window_days,
                "integer",
                (cfg.training.holdout_days + 1, 365),
                "Training window (batches)",
                f"How many recent validated, labelled batches to use ({cfg.training.holdout_days + 1} "
                f"to 365), the {cfg.training.holdout_days}-batch holdout included.",
            ),
            "promote": dagkit.flag_param(
                True, "Promote", "Set to false for a dry run: train and evaluate, but change no alias."
            ),
            "require_approval": dagkit.flag_param(
                cfg.registry.require_approval,
                "Require approval",
                "Wait for a person to approve the promotion in the Airflow UI.",
            ),
        },
    )
    def retrain() -> None:
        @task(multiple_outputs=False)
        @fail_fast
        def plan(
            params: dict[str, Any],
            run_id: str,
            dag_run: Any = None,
            triggering_asset_events: Any = None,
        ) -> dict[str, Any]:
            """Record the run as running; why it trains, from which data, and against which champion."""
            from driftwatch.retraining import plan as plan_retrain

            events = [dict(e.extra or {}) for evs in (triggering_asset_events or {}).values() for e in evs]
            # The run's own date, not the worker's clock: asset-triggered runs may have no logical date.
            run_date = dag_run.logical_date or dag_run.data_interval_end or dag_run.run_after
            return plan_retrain(
                dagkit.s3(cfg),
                cfg,
                dagkit.tracking_uri(cfg),
                params,
                run_id,
                events,
                run_date=run_date,
                started_at=dag_run.start_date,
            )

        def retrain_run(plan: dict[str, Any], data: dict[str, Any]) -> Any:
            """This run's plan and data with the model's S3 client and MLflow URI: what the later steps work on."""
            from driftwatch.retraining import RetrainRun

            return RetrainRun(dagkit.s3(cfg), cfg, dagkit.tracking_uri(cfg), plan, data)

        @task(multiple_outputs=False)
        @fail_fast
        def assemble_data(plan: dict[str, Any]) -> dict[str, Any]:
            """Training set and time-based holdout, stored in S3 with their digests."""
            from driftwatch.retraining import assemble_data as assemble

            return assemble(dagkit.s3(cfg), cfg, plan)

        @task(multiple_outputs=False)
        @fail_fast
        def train_challenger(plan: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            """Fit the pipeline and register it in MLflow with its full lineage."""
            from driftwatch.retraining import train_and_register

            return train_and_register(retrain_run(plan, data))

        @task(multiple_outputs=False)
        @fail_fast
        def evaluate(plan: dict[str, Any], data: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
            """Champion and challenger on the same holdout, the gate, and the side-by-side report."""
            from driftwatch.retraining import evaluate_candidate

            return evaluate_candidate(retrain_run(plan, data), candidate)

        @task(multiple_outputs=False)
        @fail_fast
        def smoke_test(plan: dict[str, Any], data: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
            """Load the registered version by its models:/ URI in a fresh process and predict."""
            from driftwatch.retraining import smoke_test_candidate

            return smoke_test_candidate(retrain_run(plan, data), candidate)

        @task.branch
        @fail_fast
        def route(plan: dict[str, Any], evaluation: dict[str, Any], smoke: dict[str, Any]) -> str:
            """Ask a person first only when a promotion is on the table and approval is required."""
            promotable = plan["promote"] and evaluation["passed"] and smoke["passed"]
            return "await_approval" if promotable and plan["require_approval"] else "apply_decision"

        await_approval = ApprovalOperator(
            task_id="await_approval",
            subject=f"Promote a new champion for {cfg.name}?",
            body="The challenger passed the gate and the smoke test. See the evaluation report in this run's XCom.",
            response_timeout=dagkit.APPROVAL_TIMEOUT,
            execution_timeout=None,  # waits on a person: response_timeout bounds it
        )

        @task(multiple_outputs=False, trigger_rule="none_failed_min_one_success")
        @fail_fast
        def apply_decision(
            plan: dict[str, Any],
            data: dict[str, Any],
            candidate: dict[str, Any],
            evaluation: dict[str, Any],
            smoke: dict[str, Any],
            run_id: str,
        ) -> dict[str, Any]:
            """Promote with compare-and-set, or tag the version as rejected with its reasons."""
            from driftwatch.retraining import apply_decision as decide

            return decide(retrain_run(plan, data), candidate, evaluation, smoke, actor=f"airflow:{run_id}")

        @task(trigger_rule="none_failed_min_one_success")
        @fail_fast
        def notify(plan: dict[str, Any], candidate: dict[str, Any], evaluation: dict[str, Any], ti: Any = None) -> list:
            """Email the side-by-side table and what was decided."""
            from driftwatch.alerts import evaluation_email

            outcome = ti.xcom_pull(task_ids="apply_decision") or {
                "action": "rejected by approver",
                "reasons": ["a person rejected the promotion in the Airflow UI"],
            }
            message = evaluation_email(cfg, plan, candidate, evaluation, outcome)
            # The outbox keeps an undelivered email in S3 and stops a cleared rerun sending it twice.
            return dagkit.email(cfg, message)

        @task(multiple_outputs=False)
        def record_finish(run_id: str, dag_run: Any = None, ti: Any = None) -> dict[str, Any]:
            """Record the run as finished and whether it promoted, whatever happened before."""
            from driftwatch.retraining import write_finished_status

            return write_finished_status(
                dagkit.s3(cfg),
                cfg,
                run_id=run_id,
                outcome=ti.xcom_pull(task_ids="apply_decision"),
                candidate=ti.xcom_pull(task_ids="train_challenger"),
                data=ti.xcom_pull(task_ids="assemble_data"),
                started_at=dag_run.start_date,
            )

        planned = plan()
        data = assemble_data(planned)
        candidate = train_challenger(planned, data)
        evaluation = evaluate(planned, data, candidate)
        smoke = smoke_test(planned, data, candidate)
        decided = apply_decision(planned, data, candidate, evaluation, smoke)
        route(planned, evaluation, smoke) >> [await_approval, decided]
        await_approval >> decided
        # A teardown runs once everything before it is done, and leaves the run's state to them.
        decided >> notify(planned, candidate, evaluation) >> record_finish().as_teardown()

    return retrain()


for _cfg in load_configs():
    globals()[f"retrain__{_cfg.name}"] = build_retrain_dag(_cfg)
