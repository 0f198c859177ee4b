"""Every S3 key of the pipeline is built in layout.py, and its keys keep their shape."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from driftwatch import layout
from driftwatch.config import ModelConfig

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for folder in ("include", "plugins", "dags")
    for p in (REPO / folder).rglob("*.py")
    if p.name != "layout.py" or p.parent.name != "driftwatch"
)
PREFIX = re.compile(r"prefix\b|prefix\(")
PATH_TEXT = re.compile(r"^[A-Za-z0-9_./=-]")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def key_building(source: str) -> list[str]:
    """Lines that build an object key by hand: a `dt=` literal, or text glued after a `*prefix`."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if "dt=" in node.value:
                hits.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            for before, after in zip(parts, parts[1:], strict=False):
                glued = isinstance(after, ast.Constant) and PATH_TEXT.match(str(after.value))
                if isinstance(before, ast.FormattedValue) and PREFIX.search(ast.unparse(before.value)) and glued:
                    hits.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            right = node.right
            if PREFIX.search(ast.unparse(node.left)) and isinstance(right, ast.Constant) and "/" in str(right.value):
                hits.append(f"{node.lineno}: {ast.unparse(node)}")
    return hits


def test_no_module_but_layout_builds_an_s3_key() -> None:
    found = {str(p.relative_to(REPO)): key_building(p.read_text()) for p in SOURCES}
    assert {path: hits for path, hits in found.items() if hits} == {}


@pytest.mark.parametrize(
    ("code", "caught"),
    [
        ('key = f"{cfg.storage.output_prefix}alerts/{slug}.json"', True),
        ('key = f"{layout.partition_prefix(cfg, day)}part-{i:05d}"', True),
        ('key = prefix + "data/batch.csv"', True),
        ('pattern = "incoming/dt=2026-01-01/"', True),
        ('message = f"no object under s3://{bucket}/{prefix} after {n} min"', False),
        ("key = layout.incoming_key(cfg, day, name)", False),
        ('def f():\n    """Lands under incoming/dt=YYYY-MM-DD/."""', False),
    ],
)
def test_the_key_check_catches_hand_built_keys(code: str, caught: bool) -> None:
    assert bool(key_building(code)) is caught


def test_keys_are_derived_from_model_and_date(demo_cfg: ModelConfig) -> None:
    out = demo_cfg.storage.output_prefix
    assert (
        layout.incoming_key(demo_cfg, "2026-01-02", "a.csv") == f"{demo_cfg.storage.incoming_prefix}dt=2026-01-02/a.csv"
    )
    assert layout.partition_key(demo_cfg, "2026-01-02", 3, ".sample.parquet") == (
        f"{out}reports/dt=2026-01-02/partitions/part-00003.sample.parquet"
    )
    assert layout.evaluation_prefix(demo_cfg, "manual__2026-01-02T00:00:00+00:00") == (
        f"{out}evaluations/manual__2026-01-02T00_00_00_00_00/"
    )
    assert layout.training_prefix(demo_cfg, "a b") == f"{out}training/a_b/"
    slugged = layout.alert_record_key(demo_cfg, "credit/2026-01-02/drift", "delivered")
    assert re.fullmatch(rf"{re.escape(out)}alerts/credit_2026-01-02_drift-[0-9a-f]{{8}}\.delivered\.json", slugged)
    # Two dedup keys that slug alike still get two records.
    assert layout.alert_record_key(demo_cfg, "a/b", "delivered") != layout.alert_record_key(
        demo_cfg, "a_b", "delivered"
    )


@pytest.mark.parametrize(
    ("rest", "servable"),
    [
        ("reports/dt=2026-01-02/drift.html", True),
        ("quarantine/dt=2026-01-02/validation.json", True),
        ("evaluations/manual__2026-01-02T00_00_00_00_00/evaluation.html", True),
        ("quarantine/dt=2026-01-02/data/part-000.csv", False),
        ("reports/dt=2026-01-02/../../incoming/x.html", False),
        ("staged/dt=2026-01-02/batch.parquet", False),
        ("history/dt=2026-01-02.json", False),
    ],
)
def test_only_report_objects_are_servable(rest: str, servable: bool) -> None:
    assert bool(layout.SERVABLE_REPORT.match(rest)) is servable


def test_batch_date_normalisation():
    assert layout.batch_date_str("2026-01-05") == "2026-01-05"
    assert layout.batch_date_str("2026-01-05T00:00:00+00:00") == "2026-01-05"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        layout.batch_date_str("05/01/2026")


def test_batch_format_by_suffix():
    assert layout.batch_format("x/part-0.CSV") == "csv"
    assert layout.batch_format("x/part-0.parquet") == "parquet"
    assert layout.batch_format("x/part-0.json") is None
