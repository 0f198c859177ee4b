"""
### Monitor `{model}`: validate each batch, measure drift, alert, request retraining

**What it does.** For the batch of its data interval (`s3://{bucket}/{incoming}dt=YYYY-MM-DD/`, CSV or
Parquet) the run:

1. waits for the batch with a deferrable sensor (timeout {timeout} min);
2. reads it (size limit {max_mb} MiB), drops the PII columns and validates it with Great Expectations
   against a suite built from the model config and the reference data;
3. **quarantines** a batch that fails a critical expectation: a copy and its validation report go to
   `{output}quarantine/dt=…/`, an email goes to {recipients}, and the run stops there. The original
   object is never modified or deleted;
4. otherwise decides drift on every row of the batch against the current champion's reference profile
   (computed once per reference; per-feature method and threshold from the config), and writes an
   Evidently report of that decision, its distributions drawn from a {sample_rows:,}-row sample;
5. scores the batch with `models:/{registered}@champion` (predictions to S3, their distribution to the
   history), **estimates** its `{metric}` without labels (CBPE, with a sampling band) and, over the labelled
   batches of the last {window} days, measures the `{metric}` of the rows that version predicted;
   on those rows, `check_attribution` ranks the features by its permutation importance against the
   ranking of its evaluation (**attribution drift** below nDCG {ndcg}: alerts, never retrains alone);
   a challenger in **shadow** (`promotion.mode: shadow`) scores the batch in the same pass, and
   `evaluate_shadow` compares the two on labelled shadow batches (paired bootstrap interval): it
   promotes (compare-and-set), rejects, or waits, and emails the verdict;
6. the **retraining policy** (`retraining:` in the config) turns the signals into one decision with a
   reason: `retrain`, `pending-labels`, `cooldown`, `alert-only`, `joined` or `none`. Data drift
   ({share:.0%} of features) must hold on {k} of the last {m} batches and, with an estimate, be harmful; a
   retrain waits for labelled rows from the drifted batches; a fall of live performance acts at once. Any
   signal emails the owners; only `retrain` emits the `{asset}` Asset event that triggers the retrain DAG.

**When it runs.** `{schedule}`, one run per batch date, from {start}. No catch-up: use a backfill
for past dates.

**Trigger by hand.** *Trigger DAG* → fill the form: `batch_date` picks a batch other than the run's
own date, `drift_share_threshold` overrides the threshold for this run only, and `force_retrain`
requests retraining even without drift (past the policy's rules).

**Outputs.** Reports (HTML and JSON, plus `manifest.json`, written last) under
`s3://{bucket}/{output}reports/dt=…/`; one history record per batch under `{output}history/`.
A rerun of the same date overwrites its own artifacts. In the Airflow UI, each run's **Reports**
tab shows its validation and drift reports; **Model monitoring** (navigation bar) shows every
batch, the drift and performance trends, quarantines and the champion's history.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from driftwatch import layout
from driftwatch.config import ModelConfig, load_configs
from driftwatch_airflow import dagkit
from driftwatch_airflow.dagkit import batch_date_of, fail_fast
from driftwatch_airflow.sensors import S3BatchSensor


def build_monitor_dag(cfg: ModelConfig) -> Any:
    retraining_requested = dagkit.retraining_asset(cfg)
    doc = __doc__.format(
        model=cfg.name,
        bucket=cfg.storage.bucket,
        incoming=cfg.storage.incoming_prefix,
        output=cfg.storage.output_prefix,
        timeout=cfg.monitor.sensor_timeout_minutes,
        max_mb=cfg.storage.max_batch_bytes // 2**20,
        recipients=", ".join(cfg.alerts.recipients),
        share=cfg.drift.dataset_drift_share,
        asset=retraining_requested.name,
        schedule=cfg.monitor.schedule,
        start=cfg.monitor.start_date,
        registered=cfg.registry.registered_model,
        metric=cfg.evaluation.primary_metric,
        sample_rows=cfg.drift.report_sample_rows,
        window=cfg.evaluation.live_window_days,
        ndcg=cfg.evaluation.attribution_drift_threshold,
        k=cfg.retraining.sustained_batches,
        m=cfg.retraining.sustained_window,
    )

    @dag(
        dag_id=f"monitor__{cfg.name}",
        description=f"Validate and drift-check each batch of {cfg.name}",
        doc_md=doc,
        schedule=cfg.monitor.schedule,
        **dagkit.dag_settings(cfg, "monitor", max_active_runs=4),
        user_defined_macros={"batch_date_of": batch_date_of},
        params={
            "batch_date": dagkit.batch_date_param(
                "Process the batch of this date (YYYY-MM-DD) instead of the run's own data interval."
            ),
            "drift_share_threshold": dagkit.bounded_param(
                None,
                ["null", "number"],
                (0.01, 1.0),
                "Drift share threshold override",
                f"Share of drifted features (0.01 to 1) that requests retraining, for this run only; "
                f"empty keeps the config's {cfg.drift.dataset_drift_share}.",
            ),
            "force_retrain": dagkit.flag_param(
                False,
                "Force retraining",
                "Request retraining even when drift stays under the threshold (the batch must still pass validation).",
            ),
        },
    )
    def monitor() -> None:
        wait_for_batch = S3BatchSensor(
            task_id="wait_for_batch",
            doc_md="Waits, deferred in the triggerer, until the batch folder holds at least one object.",
            aws_conn_id=cfg.storage.aws_conn_id,
            bucket_name=cfg.storage.bucket,
            bucket_key=layout.incoming_pattern(cfg, "{{ batch_date_of(params, ds) }}"),
            poke_interval=cfg.monitor.sensor_poke_seconds,
            timeout=cfg.monitor.sensor_timeout_minutes * 60,
            # A batch that never arrives skips the run instead of failing it; record_missing_batch
            # then records and reports it, and checks that the folder really is empty.
            soft_fail=True,
            execution_timeout=None,  # the sensor's own timeout bounds the wait, and soft-fails
        )

        @task(multiple_outputs=False, trigger_rule="all_skipped")
        @fail_fast
        def record_missing_batch(params: dict[str, Any], ds: str | None = None) -> dict[str, Any]:
            """The batch did not arrive in time: record "missing batch" in the history and email the owners."""
            from driftwatch.alerts import missing_batch_email
            from driftwatch.pipeline import missing_batch_step

            client = dagkit.s3(cfg)
            outcome = missing_batch_step(
                client, cfg, batch_date_of(params, ds), waited_minutes=cfg.monitor.sensor_timeout_minutes
            )
            message = missing_batch_email(cfg, outcome["batch_date"], outcome["reason"])
            return {**outcome, "emailed": dagkit.email(cfg, message, client)}

        @task(multiple_outputs=False)
        @fail_fast
        def validate_batch(params: dict[str, Any], ds: str | None = None) -> dict[str, Any]:
            """Read the batch, drop PII, validate it with GX, stage it when valid."""
            from driftwatch.pipeline import validate_step

            return validate_step(dagkit.s3(cfg), cfg, batch_date_of(params, ds), dagkit.tracking_uri(cfg))

        @task.branch
        def route(summary: dict[str, Any]) -> str:
            """Valid batches go on to drift; a critical failure sends the batch to quarantine."""
            return "plan_drift" if summary["passed"] else "quarantine_batch"

        @task(multiple_outputs=False)
        @fail_fast
        def quarantine_batch(summary: dict[str, Any]) -> dict[str, Any]:
            """Copy the batch and its report under quarantine/, record it and email the owners."""
            from driftwatch.alerts import quarantine_email
            from driftwatch.pipeline import quarantine_step

            client = dagkit.s3(cfg)
            outcome = quarantine_step(client, cfg, summary["batch_date"], summary)
            message = quarantine_email(
                cfg, summary["batch_date"], outcome["reason"], outcome["failures"], outcome["links"]
            )
            return {**outcome, "emailed": dagkit.email(cfg, message, client)}

        @task
        @fail_fast
        def plan_drift(summary: dict[str, Any]) -> list[dict[str, Any]]:
            """Split the staged batch into partitions of at most drift.partition_rows rows (usually one)."""
            from driftwatch.pipeline import drift_partitions

            return drift_partitions(cfg, summary)

        @task(multiple_outputs=False)
        @fail_fast
        def profile_partition(part: dict[str, Any]) -> dict[str, Any]:
            """Profile one partition against the reference profile (mapped: partitions run in parallel)."""
            from driftwatch.pipeline import profile_partition_step

            return profile_partition_step(dagkit.s3(cfg), cfg, part)

        @task(multiple_outputs=False)
        @fail_fast
        def compute_drift(
            summary: dict[str, Any], partitions: list[dict[str, Any]], params: dict[str, Any]
        ) -> dict[str, Any]:
            """Merge the partition profiles: drift decided on every row; Evidently reports it over a sample."""
            from driftwatch.pipeline import drift_step

            return drift_step(
                dagkit.s3(cfg),
                cfg,
                summary["batch_date"],
                summary,
                partitions=list(partitions),
                threshold_override=params.get("drift_share_threshold"),
                force_retrain=bool(params.get("force_retrain")),
            )

        @task(multiple_outputs=False)
        @fail_fast
        def score_batch(summary: dict[str, Any]) -> dict[str, Any]:
            """Score the batch with models:/<name>@champion; measure live performance where labels arrived."""
            from driftwatch.scoring import score_step

            return score_step(dagkit.s3(cfg), cfg, dagkit.tracking_uri(cfg), summary["batch_date"])

        @task(multiple_outputs=False, trigger_rule="none_skipped")
        def scoring_outcome(ti: Any = None) -> dict[str, Any]:
            """What scoring gave the decision; when it failed, the drift alert and request go ahead without it."""
            from driftwatch.scoring import scoring_outcome as outcome

            return outcome(ti.xcom_pull(task_ids="score_batch"))

        @task(multiple_outputs=False, trigger_rule="none_skipped")
        @fail_fast
        def evaluate_shadow(summary: dict[str, Any]) -> dict[str, Any]:
            """The challenger in shadow against the champion on labelled shadow batches: promote, reject or wait."""
            from driftwatch.alerts import shadow_email
            from driftwatch.shadow import shadow_step

            client = dagkit.s3(cfg)
            outcome = shadow_step(client, cfg, dagkit.tracking_uri(cfg), summary["batch_date"])
            if outcome.get("active") and outcome["status"] != "shadow":
                outcome["emailed"] = dagkit.email(cfg, shadow_email(cfg, outcome), client)
            return outcome

        @task(multiple_outputs=False)
        @fail_fast
        def check_attribution(summary: dict[str, Any]) -> dict[str, Any]:
            """The champion's permutation importance on its labelled window against its evaluation's ranking (nDCG)."""
            from driftwatch.attribution import attribution_step

            return attribution_step(dagkit.s3(cfg), cfg, dagkit.tracking_uri(cfg), summary["batch_date"])

        @task(multiple_outputs=False, trigger_rule="none_skipped")
        def attribution_outcome(ti: Any = None) -> dict[str, Any]:
            """What the attribution check gave the decision; when it failed, the decision goes ahead without it."""
            from driftwatch.attribution import attribution_outcome as outcome

            return outcome(ti.xcom_pull(task_ids="check_attribution"))

        @task(multiple_outputs=False)
        @fail_fast
        def decide(
            drift: dict[str, Any], scored: dict[str, Any], attribution: dict[str, Any], params: dict[str, Any]
        ) -> dict[str, Any]:
            """The retraining policy turns every signal into one decision with its reason; recorded."""
            from driftwatch.decisions import decide_step

            manual = bool(params.get("force_retrain"))
            return decide_step(dagkit.s3(cfg), cfg, drift, scored, manual=manual, attribution=attribution)

        @task.branch
        def act(decision: dict[str, Any]) -> list[str]:
            """Alert when a signal fired; request retraining only when the policy says retrain."""
            return [
                t for t, due in (("alert_drift", decision["alert"]), ("request_retraining", decision["retrain"])) if due
            ]

        @task(multiple_outputs=False)
        @fail_fast
        def alert_drift(decision: dict[str, Any]) -> list[str]:
            """Email the drift table, a trend chart of recent batches and where the report is."""
            from driftwatch import history
            from driftwatch.alerts import drift_email, report_links

            client = dagkit.s3(cfg)
            trend = history.read_history(client, cfg, last=14)
            message = drift_email(cfg, decision["batch_date"], decision, report_links(cfg, decision["links"]), trend)
            sent = dagkit.email(cfg, message, client)
            history.record_step(client, cfg, decision["batch_date"], "alert_drift", {"done": True, "sent_to": sent})
            return sent

        @task(outlets=[retraining_requested])
        @fail_fast
        def request_retraining(decision: dict[str, Any], run_id: str | None = None, outlet_events: Any = None) -> str:
            """Emit the Asset event, carrying the reason, that the retrain DAG is scheduled on."""
            from airflow.sdk.exceptions import AirflowSkipException

            from driftwatch import history
            from driftwatch.decisions import note_request

            client, day, signal = dagkit.s3(cfg), decision["batch_date"], decision["signal_key"]
            earlier = history.earlier_retraining_request(client, cfg, day, signal, run_id or "")
            if earlier:
                history.record_step(client, cfg, day, "request_retraining", {"done": True, "run_id": earlier["run_id"]})
                # A skipped task emits no Asset event: a rerun must not start a second retrain run.
                raise AirflowSkipException(
                    f"retraining for {day} ({signal}) was already requested by run {earlier['run_id']}"
                )
            history.record_retraining_request(client, cfg, day, signal, decision["reason"], run_id or "")
            note_request(client, cfg, day, run_id or "")
            history.record_step(client, cfg, day, "request_retraining", {"done": True, "run_id": run_id})
            outlet_events[retraining_requested].extra = {
                "model": cfg.name,
                "batch_date": decision["batch_date"],
                "reason": decision["reason"],
                "signal": signal,
                "drifted_share": decision["drifted_share"],
                "drift_report": decision["report_uri"],
            }
            return decision["reason"]

        summary = validate_batch()
        wait_for_batch >> [summary, record_missing_batch()]
        plan = plan_drift(summary)
        drift = compute_drift(summary, profile_partition.expand(part=plan))
        route(summary) >> [quarantine_batch(summary), plan]
        scored = score_batch(summary)
        drift >> scored
        # Scoring's outcome, not its success: a failed score_batch must not silence the drift alert.
        outcome = scoring_outcome()
        scored >> outcome
        # After scoring (today's predictions say whose rows are whose); its failure, like scoring's, decides without it.
        attribution = check_attribution(summary)
        scored >> attribution
        attributed = attribution_outcome()
        attribution >> attributed
        # Its own branch: a failed shadow comparison never holds up the drift decision or its alerts.
        scored >> evaluate_shadow(summary)
        decision = decide(drift, outcome, attributed)
        act(decision) >> [alert_drift(decision), request_retraining(decision)]

    return monitor()


for _cfg in load_configs():
    globals()[f"monitor__{_cfg.name}"] = build_monitor_dag(_cfg)
