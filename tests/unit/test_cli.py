"""The `driftwatch` CLI (init, check) on generated datasets, and fail-fast task errors (no network)."""

from __future__ import annotations

import pytest
import yaml

from driftwatch import cli
from driftwatch.config import load_config
from tests.datasets import generator as gen


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bank")
    gen.main(["--out", str(folder)])
    return folder


def test_init_drafts_a_config_that_loads_with_no_edits(bank, tmp_path, capsys):
    out = tmp_path / "bank.yaml"
    argv = ["init", "--reference", str(bank / "reference.csv"), "--target", "outcome", "--id", "record_id"]
    assert cli.main([*argv, "--name", "bank", "--out", str(out), "--start-date", "2026-03-01"]) == 0
    cfg = load_config(out)
    assert cfg.dataset.pii_columns == ["customer_email"], "an email column must be flagged as PII by its name"
    assert cfg.dataset.timestamp_column is None
    assert cfg.dataset.target.task == "classification" and cfg.dataset.target.positive_label == "yes"
    types = {f.name: f.type for f in cfg.dataset.features}
    assert types == {
        "amount": "numeric",
        "visits": "numeric",
        "score": "numeric",
        "plan": "categorical",
        "segment": "categorical",
    }
    assert cfg.dataset.feature("plan").allowed_values == ["basic", "plus", "pro"]
    assert "# numeric" in out.read_text(), "every inferred choice carries its reason"
    assert cli.main([*argv, "--name", "bank", "--out", str(out)]) == 2, "an existing config is not overwritten"


def test_init_makes_integer_codes_and_booleans_categories(tmp_path):
    case = gen.Case("codes", category="int_codes", target="bool")
    reference = gen.reference_frame(case, rows=500)
    path = tmp_path / "ref.parquet"
    path.write_bytes(gen.file_bytes(reference, "parquet"))
    out = tmp_path / "codes.yaml"
    argv = ["init", "--reference", str(path), "--target", "outcome", "--id", "record_id", "--out", str(out)]
    assert cli.main(argv) == 0
    cfg = load_config(out)
    assert cfg.dataset.feature("segment").type == "categorical"
    assert cfg.dataset.feature("segment").allowed_values == ["1", "2", "3", "4", "5"]
    assert cfg.dataset.target.positive_label is True and cfg.dataset.timestamp_column == "event_time"


def drafted(bank, tmp_path):
    """The config init drafts for the bank reference."""
    out = tmp_path / "bank.yaml"
    cli.main(
        [
            "init",
            "--reference",
            str(bank / "reference.csv"),
            "--target",
            "outcome",
            "--id",
            "record_id",
            "--name",
            "bank",
            "--out",
            str(out),
        ]
    )
    return out


def check(config, bank, batch) -> int:
    """`driftwatch check` of a batch, with the bank reference and the drifted day's labels."""
    labels = bank / "drifted-labels.parquet"
    return cli.main(
        [
            "check",
            str(config),
            "--reference",
            str(bank / "reference.csv"),
            "--batch",
            str(batch),
            "--labels",
            str(labels),
        ]
    )


def test_check_lists_every_problem_of_a_broken_batch(bank, tmp_path, capsys):
    out = drafted(bank, tmp_path)
    broken = gen.make_frames(gen.BANK, rows=200, seed=5)[0].drop(columns=["score"]).assign(plan="platinum")
    (tmp_path / "broken.csv").write_bytes(gen.file_bytes(broken, "csv"))
    code = check(out, bank, tmp_path / "broken.csv")
    printed = capsys.readouterr().out
    assert code == 1
    assert "unexpected column(s) note" in printed and "schema.ignored_columns" in printed
    assert "no column 'score' (schema.features[score])" in printed
    assert "trial fit: hist_gradient_boosting" in printed and "random 20%" in printed


def test_check_of_a_good_batch_says_what_the_monitor_would_do(bank, tmp_path, capsys):
    out = drafted(bank, tmp_path)
    raw = yaml.safe_load(out.read_text())
    raw["schema"]["ignored_columns"] = list(gen.EXTRAS)
    out.write_text(yaml.safe_dump(raw))
    code = check(out, bank, bank / "drifted.csv")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "the monitor would alert and request retraining" in printed
    assert "600 of 600 batch rows labelled" in printed, "zero-padded ids must join across CSV and Parquet"


def test_check_reports_every_config_error_with_its_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "schema": {
                    "id_column": "id",
                    "target": {"name": "y", "task": "regression", "positive_label": 1},
                    "features": [{"name": "x", "type": "numeric", "min": 5, "max": 1}],
                },
                "storage": {"bucket": "b-b", "reference_key": "r.csv"},
                "alerts": {"recipients": ["not-an-email"]},
                "monitor": {"start_date": "2026-01-01"},
                "training": {"holdout_fraction": 0.9},
            }
        )
    )
    assert cli.main(["check", str(bad)]) == 1
    printed = capsys.readouterr().out
    for field in ("schema.target", "schema.features[x]", "alerts.recipients", "training.holdout_fraction"):
        assert field in printed, f"{field} not named in:\n{printed}"


def test_permanent_errors_fail_the_task_at_once_and_io_errors_do_not():
    from airflow.sdk.exceptions import AirflowFailException

    from driftwatch.errors import NotEnoughData
    from driftwatch_airflow.dagkit import fail_fast

    @fail_fast
    def short_of_data(params: dict) -> None:
        raise NotEnoughData("1 labelled batch: wait for labels")

    @fail_fast
    def flaky(params: dict) -> None:
        raise ConnectionError("reset by peer")

    with pytest.raises(AirflowFailException, match="wait for labels"):
        short_of_data({})
    with pytest.raises(ConnectionError):
        flaky({})
    assert short_of_data.__name__ == "short_of_data" and "params" in short_of_data.__wrapped__.__code__.co_varnames
