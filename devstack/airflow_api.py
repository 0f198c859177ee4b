"""A small client for Airflow 3's public REST API (/api/v2), authenticated with a JWT."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
import tenacity

from devstack.procs import poll_until

TERMINAL_RUN_STATES = {"success", "failed"}
BACKFILL_ATTEMPTS = 5


class AirflowApiError(RuntimeError):
    """The message carries the method, path, status and Airflow's detail."""


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url, self.timeout, self.session = base_url.rstrip("/"), timeout, requests.Session()
        login = {"username": username, "password": password}
        response = self.session.post(f"{self.base_url}/auth/token", json=login, timeout=timeout)
        if response.status_code not in (200, 201):
            raise AirflowApiError(f"login as {username} failed: HTTP {response.status_code} {response.text[:200]}")
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, retries: int = 30, **kwargs: Any) -> Any:
        """One API call; SQLite's "database is locked" answers (500/503) are retried, others raised."""
        response = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=lambda state: 1 + (state.attempt_number - 1) % 3,
            retry=tenacity.retry_if_result(lambda r: r.status_code in (500, 503) and "atabase" in r.text),
            retry_error_callback=lambda state: state.outcome.result(),
        )(self.session.request, method, f"{self.base_url}/api/v2{path}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> dict[str, Any]:
        def parsed() -> dict[str, Any] | None:
            try:
                return self.call("GET", f"/dags/{dag_id}")
            except AirflowApiError as err:
                if "HTTP 404" not in str(err):
                    raise
            if errors := self.call("GET", "/importErrors").get("import_errors", []):
                details = "\n".join(f"{e['filename']}: {e['stack_trace'][-800:]}" for e in errors)
                raise AirflowApiError(f"DAG files failed to import:\n{details}")
            return None

        if dag := poll_until(parsed, timeout, 2):
            return dag
        raise AirflowApiError(f"DAG {dag_id} did not appear within {timeout:.0f} s")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def create_backfill(
        self, dag_id: str, from_date: str, to_date: str, max_active_runs: int, reprocess: bool = False
    ) -> dict[str, Any]:
        """Backfill [from_date, to_date] and check it took every date: on SQLite a POST answered "database
        is locked" half-way can commit a backfill without runs (409 on retry); it is cancelled and redone."""
        body = {
            "dag_id": dag_id,
            "from_date": f"{from_date}T00:00:00Z",
            "to_date": f"{to_date}T00:00:00Z",
            "max_active_runs": max_active_runs,
            "reprocess_behavior": "completed" if reprocess else "none",
        }
        for _ in range(BACKFILL_ATTEMPTS):
            # A backfill left unfinished (a stopped stack, or the empty one above) blocks a new one (409).
            for stale in self.call("GET", "/backfills", params={"dag_id": dag_id})["backfills"]:
                if stale.get("completed_at") is None:
                    self.call("PUT", f"/backfills/{stale['id']}/cancel")
            try:
                backfill = self.call("POST", "/backfills", json=body)
            except AirflowApiError as err:
                # A POST retried after SQLite's lock answer may already have created the backfill.
                if "HTTP 409" not in str(err):
                    raise
                backfill = self.call("GET", "/backfills", params={"dag_id": dag_id})["backfills"][-1]
            if not (missing := self.dates_not_taken(dag_id, backfill, from_date, to_date, reprocess)):
                return backfill
        raise AirflowApiError(
            f"backfill of {dag_id} over {from_date}..{to_date}: after {BACKFILL_ATTEMPTS} attempts, "
            f"these dates still have no run of it: {missing}; see the api-server's log"
        )

    def dates_not_taken(
        self, dag_id: str, backfill: dict[str, Any], from_date: str, to_date: str, reprocess: bool
    ) -> list[str]:
        """Dates with no run or, when reprocessing, a run that finished before the backfill (not cleared)."""
        created = datetime.fromisoformat(backfill["created_at"])
        runs = {r["logical_date"][:10]: r for r in self.dag_runs(dag_id) if r.get("logical_date")}
        start, end = date.fromisoformat(from_date), date.fromisoformat(to_date)
        missing = []
        for day in ((start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)):
            run = runs.get(day)
            ended_before = run and run.get("end_date") and datetime.fromisoformat(run["end_date"]) < created
            if run is None or (reprocess and run["state"] in TERMINAL_RUN_STATES and ended_before):
                missing.append(day)
        return missing

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        params = {"limit": 100, "order_by": "logical_date"}
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def clear_run(self, dag_id: str, run_id: str) -> None:
        self.call("POST", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/clear", json={"dry_run": False})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> dict:
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json={"conf": conf or {}, "logical_date": logical_date})
