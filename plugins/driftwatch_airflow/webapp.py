"""The FastAPI app the driftwatch plugin mounts on the Airflow api-server under ``/driftwatch``.

Routes (all behind Airflow's own authentication: the JWT from the ``Authorization`` header or
the UI's ``_token`` cookie, checked by ``airflow.api_fastapi.core_api.security.get_user``, then
the auth manager's DAG-run read permission on the model's monitor DAG):

- ``GET /monitoring``: the "Model monitoring" page, one section per configured model;
- ``GET /report/<bucket key>``: one report object from S3 with its content type, only for keys
  under a model's ``reports/``, ``quarantine/`` or ``evaluations/`` prefix;
- ``GET /runs/<dag_id>/<run_id>``: the reports of one DAG run (the run's "Reports" tab).

Built on first request by ``driftwatch_plugin``, so loading the plugin costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from html import escape
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

log = logging.getLogger(__name__)

# Reports come from data (category values, column names); even though they are escaped, they get
# no network access and cannot be framed by other sites. Evidently's inlined bundle needs eval.
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; frame-ancestors 'self'"
)
# Airflow 3.3 frames plugin pages in an iframe sandboxed without allow-top-navigation and
# allow-popups, so a plain target=_top link (a DAG page) or target=_blank link (MLflow) is a dead
# click. The sandbox does grant allow-same-origin + allow-scripts: this script hands such a click
# to a twin link in the top document, which is free to follow it. The CSP allows this one script
# by its hash and nothing else.
LINK_SCRIPT = (
    "document.addEventListener('click',function(e){"
    "var a=e.target.closest&&e.target.closest('a[target=_top],a[target=_blank]');"
    "if(!a||window.top===window)return;e.preventDefault();"
    "var d=window.top.document,t=d.createElement('a');t.href=a.href;t.target=a.target;t.rel='noopener';"
    "d.body.appendChild(t);t.click();t.remove();});"
)
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; frame-ancestors 'self'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(LINK_SCRIPT.encode()).digest()).decode()}'"
)
MAX_REPORT_BYTES = 64 * 2**20


class _LoginRequired(Exception):
    """No credential at all on a browser request: send the person to the login page."""


async def current_user(request: Request) -> Any:
    """The Airflow user behind this request, authenticated exactly like Airflow's own API."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials
    from fastapi.security.utils import get_authorization_scheme_param

    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if scheme and token else None
    if bearer is None and not request.cookies.get(COOKIE_NAME_JWT_TOKEN) and _wants_html(request):
        raise _LoginRequired
    return await get_user(request, None, bearer)


UserDep = Annotated[Any, Depends(current_user)]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def can_read_runs(user: Any, dag_id: str) -> bool:
    """Whether the auth manager lets ``user`` read the runs of ``dag_id`` (reports are run outputs)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


def _require_runs(user: Any, dag_id: str) -> None:
    if not can_read_runs(user, dag_id):
        raise HTTPException(status_code=403, detail=f"not allowed to read the runs of {dag_id}")


def _configs() -> list[Any]:
    from driftwatch.config import load_configs

    return load_configs()


def _s3(cfg: Any) -> Any:
    from driftwatch_airflow.hooks import s3_client

    return s3_client(cfg.storage.aws_conn_id)


def _tracking_uri(cfg: Any) -> str | None:
    from driftwatch_airflow.hooks import mlflow_tracking_uri

    try:
        return mlflow_tracking_uri(cfg.registry.mlflow_conn_id)
    except Exception as err:  # a missing connection must not take the page down
        log.warning("no MLflow tracking URI for %s: %s", cfg.name, err)
        return None


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body.replace("</body>", f"<script>{LINK_SCRIPT}</script></body>", 1),
        status_code=status_code,
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "private, no-store"},
    )


def _root(request: Request) -> str:
    """The mount point of this app (``/driftwatch``, behind any proxy prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _airflow_root(request: Request) -> str:
    root = _root(request)
    return root[: -len("/driftwatch")] if root.endswith("/driftwatch") else ""


def create_app() -> FastAPI:
    """The plugin's FastAPI app."""
    from driftwatch import monitoring
    from driftwatch.reports import monitoring as pages

    app = FastAPI(title="driftwatch", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_LoginRequired)
    async def _to_login(request: Request, _exc: _LoginRequired) -> Response:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring_page(request: Request, user: UserDep, last: Annotated[int, Query(ge=1, le=90)] = 14):
        """One section per configured model the user may see."""
        root, airflow_root = _root(request), _airflow_root(request)
        sections, nav = [], []
        for cfg in _configs():
            if not can_read_runs(user, f"monitor__{cfg.name}"):
                continue
            tracking = _tracking_uri(cfg)
            try:
                page = monitoring.load_model_page(
                    _s3(cfg),
                    cfg,
                    tracking,
                    last=last,
                    mlflow_url=tracking if tracking and tracking.startswith("http") else None,
                )
            except Exception as err:  # one broken model must not hide the others
                log.exception("monitoring page for %s failed", cfg.name)
                page = monitoring.build_model_page(cfg, [], errors=[f"{type(err).__name__}: {str(err)[:300]}"])
            nav.append(f'<a href="#model-{escape(cfg.name)}">{escape(cfg.name)}</a>')
            sections.append(
                pages.render_model_section(page, report_base=f"{root}/report", dag_base=f"{airflow_root}/dags")
            )
        if not sections:
            sections = ['<p class="muted">No configured model whose runs you may read.</p>']
        body = f'<p class="muted">Models: {" · ".join(nav)} — last {last} batches each.</p>' + "".join(sections)
        return _html(pages.render_page("Model monitoring", body))

    @app.get("/report/{key:path}")
    def report(key: str, user: UserDep) -> Response:
        """One report object, validated against the pipeline's prefixes, with its content type."""
        from driftwatch import storage

        resolved = monitoring.resolve_report(_configs(), key)
        if resolved is None:
            raise HTTPException(status_code=404, detail="not a driftwatch report")
        cfg, content_type = resolved
        _require_runs(user, f"monitor__{cfg.name}")
        try:
            data = storage.read_bytes(_s3(cfg), cfg.storage.bucket, key, max_bytes=MAX_REPORT_BYTES)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail="report not found (not written yet?)") from None
        except storage.ObjectTooLarge as err:
            raise HTTPException(status_code=413, detail=str(err)) from None
        headers = {
            "Cache-Control": "private, max-age=60",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": REPORT_CSP,
        }
        return Response(data, media_type=content_type, headers=headers)

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_reports(request: Request, dag_id: str, run_id: str, user: UserDep, task_id: str | None = None):
        """The Reports tab of one run: its report objects, the main HTML one embedded."""
        _require_runs(user, dag_id)
        run = _dag_run(dag_id, run_id)
        if run is None:
            raise HTTPException(status_code=404, detail="no such DAG run")
        batch_date, reports = run_report_keys(_configs(), dag_id, run_id, run, task_id)
        body = pages.render_run_reports(dag_id, run_id, batch_date, reports, f"{_root(request)}/report")
        body += f'<p><a href="{_root(request)}/monitoring" target="_top">Model monitoring</a></p>'
        return _html(pages.render_page(f"Reports of {dag_id}", body))

    return app


def _dag_run(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The conf and dates of one run, read from the metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            return None
        logical = run.logical_date or run.data_interval_start
        return {"conf": dict(run.conf or {}), "logical_date": logical.date().isoformat() if logical else None}


# Which reports a monitor task's tab shows; every other task shows all of the run's reports.
_TASK_REPORTS = {
    "validate_batch": ("validation.html", "validation.json"),
    "quarantine_batch": ("validation.html", "manifest.json"),
    "compute_drift": ("drift.html", "drift.json", "drift_decision.json"),
}
_ORDER = ("drift.html", "evaluation.html", "validation.html")


def run_report_keys(
    cfgs: list[Any], dag_id: str, run_id: str, run: dict[str, Any], task_id: str | None = None
) -> tuple[str | None, dict[str, str]]:
    """The batch date a run handled and its existing report objects, by label."""
    from driftwatch import artifacts, layout, monitoring, storage

    by_name = {c.name: c for c in cfgs}
    kind, _, model = dag_id.partition("__")
    conf = run["conf"]
    batch_date = conf.get("batch_date") or run["logical_date"]
    prefixes: list[tuple[Any, str]] = []
    if kind == "monitor" and model in by_name and batch_date:
        cfg = by_name[model]
        prefixes = [(cfg, layout.report_prefix(cfg, batch_date)), (cfg, layout.quarantine_prefix(cfg, batch_date))]
    elif kind == "retrain" and model in by_name:
        prefixes = [(by_name[model], layout.evaluation_prefix(by_name[model], run_id))]
    elif dag_id == "monitor_fleet" and batch_date:
        wanted = conf.get("models") or list(by_name)
        prefixes = [(by_name[m], layout.report_prefix(by_name[m], batch_date)) for m in wanted if m in by_name]
    found: dict[str, str] = {}
    for cfg, prefix in prefixes:
        client = _s3(cfg)
        objects = storage.list_objects(client, cfg.storage.bucket, prefix)
        # A set still being (re)written, or whose run failed, may mix new and stale reports: say so.
        incomplete = bool(objects) and artifacts.read_manifest(client, cfg.storage.bucket, prefix) is None
        for obj in objects:
            name = obj.key[len(prefix) :]
            if not monitoring.report_key_allowed(cfg, obj.key):
                continue
            if task_id in _TASK_REPORTS and name not in _TASK_REPORTS[task_id]:
                continue
            area = "quarantine" if "/quarantine/" in f"/{obj.key}" else "report"
            note = ", incomplete" if incomplete else ""
            label = f"{cfg.name} {name}{note}" if dag_id == "monitor_fleet" else f"{name} ({area}{note})"
            found[label] = obj.key
    ordered = sorted(found.items(), key=lambda kv: (_rank(kv[1]), kv[0]))
    return batch_date, dict(ordered)


def _rank(key: str) -> int:
    name = key.rsplit("/", 1)[-1]
    return _ORDER.index(name) if name in _ORDER else len(_ORDER) + (0 if name.endswith(".html") else 1)
