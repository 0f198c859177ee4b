"""The shadow comparison's arithmetic: PSI, agreement, the paired bootstrap and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from driftwatch import shadow


@pytest.fixture
def shadow_cfg(cfg):
    promotion = cfg.promotion.model_copy(
        update={
            "mode": "shadow",
            "shadow_batches": 2,
            "shadow_max_days": 14,
            "shadow_min_rows": 200,
            "bootstrap_iterations": 300,
        }
    )
    evaluation = cfg.evaluation.model_copy(
        update={
            "primary_metric": "roc_auc",
            "min_improvement": 0.01,
            "slice_columns": ["segment"],
            "min_slice_rows": 100,
        }
    )
    return cfg.model_copy(update={"promotion": promotion, "evaluation": evaluation})


def auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None


def labelled_scores(n: int, seed: int, champion_noise: float, challenger_noise: float):
    """Labels and two models' scores: the less noise, the better the model."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=0.5, size=n) > 0).astype(int)
    champion = 1 / (1 + np.exp(-(signal + rng.normal(scale=champion_noise, size=n))))
    challenger = 1 / (1 + np.exp(-(signal + rng.normal(scale=challenger_noise, size=n))))
    return y, champion, challenger


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    scores = rng.random(5000)
    assert shadow.psi(scores, scores) == pytest.approx(0.0, abs=1e-9)
    assert shadow.psi(scores, np.clip(scores + 0.3, 0, 1)) > 0.5 > shadow.psi(scores, rng.random(5000))
    assert shadow.psi(np.array([np.nan]), scores) is None


def test_compare_scores_counts_agreement_at_the_decision_threshold():
    champion = np.array([0.1, 0.4, 0.6, 0.9, np.nan])
    challenger = np.array([0.2, 0.6, 0.7, 0.3, 0.5])
    found = shadow.compare_scores(champion, challenger, "classification")
    assert found["rows"] == 4, "a null score on either side leaves the row out"
    assert found["agreement"] == pytest.approx(0.5)
    assert found["positive_rate"] == pytest.approx(0.5) and found["positive_rate_change"] == pytest.approx(0.0)
    regression = shadow.compare_scores(np.array([1.0, 2.0]), np.array([1.5, 1.0]), "regression")
    assert regression["mean_abs_difference"] == pytest.approx(0.75) and "agreement" not in regression


def test_paired_bootstrap_brackets_a_real_improvement_and_is_seeded(shadow_cfg):
    y, champion, challenger = labelled_scores(3000, 1, champion_noise=2.0, challenger_noise=0.3)
    found = shadow.paired_bootstrap(y, champion, challenger, auc, cfg=shadow_cfg)
    truth = auc(y, challenger) - auc(y, champion)
    assert found["difference"] == pytest.approx(truth)
    assert 0 < found["lower"] < truth < found["upper"]
    assert found == shadow.paired_bootstrap(y, champion, challenger, auc, cfg=shadow_cfg), "seeded"
    same = shadow.paired_bootstrap(y, champion, champion, auc, cfg=shadow_cfg)
    assert same["lower"] == same["upper"] == 0.0, "paired: the same model on the same rows differs by nothing"


def test_paired_bootstrap_caps_the_resampled_rows(shadow_cfg):
    capped = shadow_cfg.model_copy(
        update={"promotion": shadow_cfg.promotion.model_copy(update={"bootstrap_max_rows": 500})}
    )
    y, champion, challenger = labelled_scores(3000, 2, 1.0, 1.0)
    found = shadow.paired_bootstrap(y, champion, challenger, auc, cfg=capped)
    assert found["resampled_rows"] == 500 and found["iterations"] == 300


def test_paired_bootstrap_sees_a_lower_is_better_metric_the_right_way(shadow_cfg):
    cfg = shadow_cfg.model_copy(
        update={"evaluation": shadow_cfg.evaluation.model_copy(update={"primary_metric": "log_loss"})}
    )
    y, champion, challenger = labelled_scores(2000, 3, champion_noise=2.0, challenger_noise=0.3)

    def loss(truth, scores):
        return float(-np.mean(truth * np.log(scores) + (1 - truth) * np.log(1 - scores)))

    assert shadow.paired_bootstrap(y, champion, challenger, loss, cfg=cfg)["lower"] > 0, "smaller loss is better"


def comparison(lower: float, upper: float, rows: int = 1000, worse: bool = False) -> dict:
    interval = {"difference": (lower + upper) / 2, "lower": lower, "upper": upper, "confidence": 0.95}
    slices = [{"slice": "segment=a", "rows": 300, "difference": -0.2, "worse": worse}]
    return {"interval": {**interval, "champion_value": 0.7}, "rows": rows, "slices": slices}


def test_verdict_promotes_rejects_waits_and_expires(shadow_cfg):
    assert shadow.shadow_verdict(shadow_cfg, comparison(0.02, 0.05), 2, 3)[0] == "promote"
    verdict, reasons = shadow.shadow_verdict(shadow_cfg, comparison(0.005, 0.05), 2, 3)
    assert verdict == "continue", "a lower bound under min_improvement is not enough"
    verdict, reasons = shadow.shadow_verdict(shadow_cfg, comparison(-0.05, -0.01), 2, 3)
    assert verdict == "reject" and "upper bound is below 0" in reasons[0]
    assert shadow.shadow_verdict(shadow_cfg, comparison(0.02, 0.05), 1, 3)[0] == "continue", "one batch of two"
    assert shadow.shadow_verdict(shadow_cfg, comparison(0.02, 0.05, rows=100), 2, 3)[0] == "continue"
    verdict, reasons = shadow.shadow_verdict(shadow_cfg, comparison(0.02, 0.05, worse=True), 2, 3)
    assert verdict == "continue" and "segment=a" in reasons[0], "a worse slice blocks the promotion"
    verdict, reasons = shadow.shadow_verdict(shadow_cfg, comparison(0.005, 0.05), 2, 14)
    assert verdict == "reject" and "14-day shadow window ended undecided" in reasons[0]


def test_slice_differences_gate_only_large_slices(shadow_cfg):
    y, champion, challenger = labelled_scores(1000, 4, 0.3, 0.3)
    segment = np.where(np.arange(1000) < 940, "a", "b")
    challenger = np.where(segment == "a", 1 - challenger, challenger)  # worse than chance on "a"
    frame = pd.DataFrame({"segment": segment, "score": champion, "challenger_score": challenger})
    found = {s["slice"]: s for s in shadow.slice_differences(frame, auc, shadow_cfg, y)}
    assert set(found) == {"segment=a"}, "segment b has 60 rows: reported by min_slice_rows, not gated"
    assert found["segment=a"]["worse"] is True and found["segment=a"]["rows"] == 940
