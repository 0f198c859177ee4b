"""The plugin is loaded by every Airflow component: it must import fast and pull in nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("fastapi", "pandas", "mlflow", "evidently", "great_expectations", "sklearn", "boto3")


def test_plugin_module_imports_nothing_heavy_and_declares_its_views():
    code = (
        "import json, sys\n"
        "from driftwatch_airflow.driftwatch_plugin import DriftwatchPlugin as P\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "apps = [a['url_prefix'] for a in P.fastapi_apps]\n"
        "print(json.dumps({'heavy': heavy, 'views': P.external_views, 'apps': apps}))\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'include'}:{REPO / 'plugins'}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"the plugin module imported {result['heavy']}"
    assert result["apps"] == ["/driftwatch"]
    destinations = {v["destination"]: v for v in result["views"]}
    assert destinations["nav"]["name"] == "Model monitoring"
    assert "{RUN_ID}" in destinations["dag_run"]["href"] and "{TASK_ID}" in destinations["task_instance"]["href"]
    assert all(not v["href"].startswith("/") for v in result["views"]), "hrefs stay relative (proxy prefixes)"
