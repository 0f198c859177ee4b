"""`make demo`: start the stack, land the last N days (ending yesterday), backfill them through the
scheduler in date order, and land each day's labels --label-delay-days later, as production sees
them: the monitor run of day d sees the labels of days <= d - delay only. Nothing already in the
bucket is overwritten, so running the demo twice is safe."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from devstack import stack
from devstack.airflow_api import TERMINAL_RUN_STATES, AirflowApi
from devstack.procs import poll_until
from devstack.smtp_sink import read_messages

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "models" / "credit_default.yaml"
SEED = 7
# Longer than a scheduler restart (5 s pause, ~30 s to start on 2 busy cores) and its loop.
SCHEDULER_SILENCE_SECONDS = 180.0
BUSY = ("running", "deferred", "queued")
SUMMARY_ENDPOINTS = ("airflow_url", "login_user", "password_file", "s3_endpoint", "mail_dir")


def seed(client: Any, cfg: Any, start: date, days: int, rows_per_day: int, delay: int = 0) -> tuple[list, int]:
    """Land the reference and the new batches (with no label delay, their labels too); the batches, how many new."""
    from driftwatch import seeding

    batches, landed = seeding.seed_scenario(client, cfg, start, days, rows_per_day, SEED, with_labels=delay <= 0)
    print(f"seeded {landed} new batch(es) of {days} ({rows_per_day} rows each) in s3://{cfg.storage.bucket}/")
    return batches, landed


def progress_line(dag_id: str, total: int, done: int, failed: int, active: list[str], elapsed: float) -> str:
    filled = round(20 * done / total) if total else 20
    line = f"  [{'#' * filled}{'-' * (20 - filled)}] {dag_id}: {done}/{total} batches done"
    line += f" ({failed} failed), {elapsed:.0f} s" if failed else f", {elapsed:.0f} s"
    return line + (f"; now: {', '.join(active)}" if active else "")


def wait_for_runs(
    api: AirflowApi, dag_id: str, dates: list[str], timeout: float, labels: Any = None
) -> dict[str, dict[str, Any]]:
    """Wait for the runs of ``dates``; lands at each poll the labels (seeding.LateLabels) their decisions make due."""
    began, last_state, unfinished = time.monotonic(), "", len(dates)

    def finished() -> tuple[dict[str, dict[str, Any]]] | None:
        nonlocal last_state, unfinished
        mine = {day: r for r in api.dag_runs(dag_id) if (day := (r.get("logical_date") or "")[:10]) in dates}
        done = [d for d, r in mine.items() if r["state"] in TERMINAL_RUN_STATES]
        failed = [d for d in done if mine[d]["state"] != "success"]
        # Queued runs have no task yet: a count says as much as a list of 14 "scheduling".
        queued = [d for d, r in mine.items() if d not in done and r["state"] == "queued"]
        active, decided = [], set(done)
        for day, run in sorted(mine.items()):
            if day not in done and day not in queued:
                tasks = {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run["dag_run_id"])}
                active.append(f"{day} {','.join(t for t, s in tasks.items() if s in BUSY) or 'scheduling'}")
                decided |= {day} if tasks.get("decide") in ("success", "skipped") else set()
        # Past its decision a run reads no label: landing now lets the retrain it requests see them.
        for day in labels.land(decided) if labels else []:
            print(f"  labels of {day} landed, {labels.delay} day(s) after the batch", flush=True)
        active += [f"{len(queued)} queued"] if queued else []
        active += [f"{len(dates) - len(mine)} not started"] if len(mine) < len(dates) else []
        state = f"{len(done)}|{len(failed)}|{active}"
        # A line when something changed, and a heartbeat every 30 s so a slow step never looks hung.
        if state != last_state or int(time.monotonic() - began) % 30 < 3:
            elapsed = time.monotonic() - began
            print(progress_line(dag_id, len(dates), len(done), len(failed), active, elapsed), flush=True)
            last_state = state
        if len(done) == len(dates):
            return (mine,)  # a tuple: true also when there are no dates
        unfinished = len(dates) - len(done)
        if stalled := scheduler_stalled(api):
            raise RuntimeError(f"{dag_id}: {unfinished} run(s) unfinished, and {stalled}")
        return None

    if found := poll_until(finished, timeout, 3):
        return found[0]
    raise TimeoutError(f"{dag_id}: {unfinished} run(s) still unfinished after {timeout:.0f} s")


def scheduler_stalled(api: AirflowApi, max_silence: float = SCHEDULER_SILENCE_SECONDS) -> str | None:
    """Why no run can progress (else a dead scheduler leaves the demo waiting out its timeout)."""
    beat = (api.call("GET", "/monitor/health").get("scheduler") or {}).get("latest_scheduler_heartbeat")
    # None: not started yet, the first heartbeat comes within seconds of the start.
    silence = (datetime.now(UTC) - datetime.fromisoformat(beat)).total_seconds() if beat else 0
    if silence <= max_silence:
        return None
    return (
        f"the Airflow scheduler has not heartbeaten for {silence:.0f} s (last {beat}): it crashed and its restarts "
        f"gave up; see the tracebacks in {stack.paths().logs / 'airflow.log'}, then `make stop` and `make demo`"
    )


def wait_for_consumers(api: AirflowApi, dag_id: str, timeout: float, quiet_seconds: float = 20) -> list[dict]:
    """Wait until no run has been active for `quiet_seconds` (an Asset event can still become a run)."""
    quiet_since, last, active = None, "", []

    def quiet() -> tuple[list[dict]] | None:
        nonlocal quiet_since, last, active
        runs = api.dag_runs(dag_id)
        active = [r for r in runs if r["state"] not in TERMINAL_RUN_STATES]
        line = f"  {dag_id}: {len(runs) - len(active)} run(s) done, {len(active)} active"
        if line != last:
            print(line, flush=True)
            last = line
        quiet_since = None if active else quiet_since or time.monotonic()
        # A tuple: true also when the DAG has no run.
        return (runs,) if quiet_since and time.monotonic() - quiet_since >= quiet_seconds else None

    if found := poll_until(quiet, timeout, 3):
        return found[0]
    raise TimeoutError(f"{dag_id}: {len(active)} run(s) still active after {timeout:.0f} s")


def bootstrap_champion(api: AirflowApi, retrain_id: str, tracking_uri: str, model: str) -> None:
    from driftwatch import registry

    if registry.champion(tracking_uri, model) is not None:
        return
    print(f"no champion in the registry yet: bootstrapping v1 with {retrain_id}")
    api.trigger(retrain_id, conf={"reason": "bootstrap: first champion from the reference data"})
    runs = wait_for_consumers(api, retrain_id, timeout=600, quiet_seconds=3)
    if registry.champion(tracking_uri, model) is None:
        states = [r["state"] for r in runs]
        raise RuntimeError(f"bootstrap did not produce a champion (retrain runs: {states}); see the Airflow UI")


def batch_table(client: Any, cfg: Any, dates: list[str], runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from driftwatch import history

    rows = [history.summary_row(day, history.read_record(client, cfg, day)) for day in dates]
    return [{**row, "run_state": runs.get(row["batch_date"], {}).get("state", "missing")} for row in rows]


def ui_links(airflow_url: str, cfg: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from driftwatch import monitoring

    base, reports = f"{airflow_url}/driftwatch/report", {}
    for row in rows:
        if row["validation"] in ("passed", "quarantined"):
            keys = monitoring.batch_report_keys(cfg, row["batch_date"], row["validation"] == "quarantined")
            reports[row["batch_date"]] = {label: monitoring.report_url(base, key) for label, key in keys.items()}
    return {
        "monitoring": f"{airflow_url}/plugin/model-monitoring",
        "monitoring_page": f"{airflow_url}/driftwatch/monitoring",
        "reports": reports,
    }


def run_pipeline(api: AirflowApi, client: Any, cfg: Any, tracking_uri: str, dates: list[str], args: Any) -> tuple:
    """Unpause, bootstrap a champion, backfill ``dates`` landing labels when due; the runs by date, the retrains."""
    from driftwatch import history, seeding

    monitor_id, retrain_id = f"monitor__{cfg.name}", f"retrain__{cfg.name}"
    for dag_id in (retrain_id, f"rollback__{cfg.name}", monitor_id):
        api.wait_for_dag(dag_id)
        api.set_paused(dag_id, False)
    bootstrap_champion(api, retrain_id, tracking_uri, cfg.registry.registered_model)
    print(f"backfilling {monitor_id} over {dates[0]} .. {dates[-1]} through the scheduler")
    # moto keeps S3 in memory: after a restart the batches are new, so earlier runs are redone.
    # Runs recorded by Airflow but missing from S3's history (a restart wiped moto) are redone too.
    missing = [d for d in dates if history.read_record(client, cfg, d) is None]
    # One run at a time by default: runs then go in date order, so each day's labels land after the
    # run of the day before them decided and before the run that should see them scores.
    reprocess = bool(args.new_batches or missing)
    api.create_backfill(monitor_id, dates[0], dates[-1], max_active_runs=args.max_active_runs, reprocess=reprocess)
    land = seeding.LateLabels(client, cfg, args.batches, args.label_delay_days)
    runs = wait_for_runs(api, monitor_id, dates, args.timeout, land)
    if failed_runs := [d for d, r in runs.items() if r["state"] != "success"]:
        # A champion promoted by an Asset-triggered retrain moves the drift reference; a batch
        # profiled against the old one is then refused, and the monitor asks for its run to be
        # cleared. That is done once here; a failure that repeats is reported below.
        print(f"re-running once, from the start, the run(s) that failed: {', '.join(failed_runs)}")
        for day in failed_runs:
            api.clear_run(monitor_id, runs[day]["dag_run_id"])
        runs.update(wait_for_runs(api, monitor_id, failed_runs, args.timeout, land))
    return runs, wait_for_consumers(api, retrain_id, timeout=args.timeout)


def print_summary(summary: dict[str, Any], password: str | None) -> None:
    """What the demo did, after its table: emails, retrains, registry and where to look next."""
    ends, retrains, registry = summary["endpoints"], summary["retrain_runs"], summary["registry"]
    print(f"\nemails sent by this demo ({len(summary['emails'])}), saved as .eml in {ends['mail_dir']}:")
    print("".join(f"  - {mail['subject']}\n" for mail in summary["emails"]), end="")
    asset = sum(r["run_type"] == "asset_triggered" for r in retrains)
    print(f"\nretrain__{summary['model']}: {asset} Asset-triggered run(s), {len(retrains)} in all")
    print(f"model registry {registry['model']} ({ends['mlflow']}):")
    for v in registry["versions"]:
        print(f"  v{v['version']:<3} {','.join(v['aliases']) or '-':<20} {v['status']:<10} {v['detail'][:110]}")
    print(f"\nAirflow UI: {ends['airflow_url']}  (user {ends['login_user']}, password {password})")
    print(f"Model monitoring: {summary['pages']['monitoring']}; each batch's reports: its run's Reports tab")
    print(f"S3: {ends['s3_endpoint']} bucket {ends['bucket']}.  demo wall time: {summary['wall_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    from driftwatch import demo_data, history, registry
    from driftwatch.config import load_config

    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument("--days", type=int, default=demo_data.DEFAULT_DAYS)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--label-delay-days", type=int, default=2, help="days after its batch a label lands")
    parser.add_argument("--max-active-runs", type=int, default=1, help="monitor runs at once (1: in date order)")
    # Generous: on a loaded 2-core machine 14 runs of ~11 tasks each took over 15 minutes.
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the runs")
    args = parser.parse_args(argv)
    started, started_at = time.monotonic(), datetime.now(UTC).replace(microsecond=0)

    cfg = load_config(DEMO_CONFIG)
    stack.start()
    env, endpoints, password = stack.airflow_env(), stack.endpoints(), stack.admin_password()
    client, model, tracking_uri = stack.s3_client(), cfg.registry.registered_model, env["MLFLOW_TRACKING_URI"]
    start = datetime.now(UTC).date() - timedelta(days=args.days)
    dates = [(start + timedelta(days=i)).isoformat() for i in range(args.days)]
    args.batches, args.new_batches = seed(client, cfg, start, args.days, args.rows_per_day, args.label_delay_days)
    api = AirflowApi(endpoints["airflow_url"], endpoints["login_user"], password or "")
    runs, retrain_runs = run_pipeline(api, client, cfg, tracking_uri, dates, args)

    rows = batch_table(client, cfg, dates, runs)
    print("\n" + "\n".join(history.table_lines(rows)))
    fresh = [m for m in read_messages(Path(endpoints["mail_dir"])) if parsedate_to_datetime(m["Date"]) >= started_at]
    mails = [{"subject": m["Subject"].strip(), "to": m["To"]} for m in fresh]
    ends = {**{k: endpoints[k] for k in SUMMARY_ENDPOINTS}, "bucket": cfg.storage.bucket, "mlflow": tracking_uri}
    summary = {
        "model": cfg.name,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "label_delay_days": args.label_delay_days,
        "batches": rows,
        "emails": mails,
        "retrain_runs": [{key: r.get(key) for key in ("dag_run_id", "run_type", "state")} for r in retrain_runs],
        "registry": {"model": model, "versions": registry.version_summaries(tracking_uri, model)},
        "endpoints": ends,
        "pages": ui_links(endpoints["airflow_url"], cfg, rows),  # the monitoring page, each batch's reports
    }
    print_summary(summary, password)
    out = Path(endpoints["state_dir"]) / "demo-summary.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"summary (report links too) written to {out}; `make stop` ends the stack")
    # A run that succeeded without writing its history record did not process this demo's batch.
    if bad := [r["batch_date"] for r in rows if r["run_state"] != "success" or r["validation"] == "no record"]:
        print(f"runs that failed or recorded nothing: {bad}; see {endpoints['logs_dir']}, the UI", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
