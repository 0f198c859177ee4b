"""Seeded, deterministic generator of a synthetic consumer-credit default domain for the demo.

It produces a reference dataset and a day-by-day scenario of incoming batches that matches
``config/models/credit_default.yaml`` and shows when retraining helps (16 days by default):

* ``stable``: drawn like the reference;
* ``harmless_drift``: a partner campaign moves region, channel, the quoted loan amount and the
  stated months employed. Enough features drift to pass ``drift.dataset_drift_share``, but the
  risk barely depends on them, so the champion ranks as well as before: it alerts, no retrain;
* ``broken``: a batch that loses a column and holds impossible ages (quarantined);
* ``covariate_drift``: a downturn packs every applicant into the same high band of credit
  utilisation and debt-to-income, and squeezes incomes, the features that separated good from bad risks: the
  champion's ROC AUC falls (its label-free estimate with it) and a retrain on the new
  applicants helps;
* ``concept_drift``: the features are back to normal but the relationship between them and
  ``defaulted`` has changed; only realized performance, once labels land, can see it.

Every value is made up: names and emails come from small word lists and use the reserved
``example.*`` domains. Only numpy, pandas and pyarrow are used; nothing happens at import time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pandas as pd

BatchKind = Literal["stable", "harmless_drift", "broken", "covariate_drift", "concept_drift"]
FileFormat = Literal["csv", "parquet"]

ID_COLUMN = "application_id"
TIMESTAMP_COLUMN = "applied_at"
TARGET_COLUMN = "defaulted"
PII_COLUMNS = ("applicant_name", "email")
NUMERIC_FEATURES = (
    "age",
    "annual_income",
    "loan_amount",
    "credit_utilization",
    "debt_to_income",
    "months_employed",
    "num_late_payments",
)
CATEGORICAL_FEATURES = ("employment_type", "home_ownership", "loan_purpose", "region", "channel")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
#: The column the broken batch loses, and the out-of-range ages it contains.
BROKEN_MISSING_COLUMN = "credit_utilization"
BROKEN_AGES = (-3, 140)
#: The reference data is dated in the month before the demo config's start date.
REFERENCE_START = date(2025, 12, 1)
REFERENCE_DAYS = 31

EMPLOYMENT_TYPES = ("salaried", "self_employed", "contractor", "unemployed", "retired")
HOME_OWNERSHIP = ("rent", "mortgage", "own", "other")
LOAN_PURPOSES = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "car",
    "medical",
    "education",
    "small_business",
    "other",
)
REGIONS = ("north", "south", "east", "west", "central")
CHANNELS = ("branch", "online", "mobile", "broker")

DEFAULT_DAYS = 16
# Phases of the default plan and their days; the broken phase is always one day. Two drift-checked
# stable days (the quarantined batch is not one) end the harmless episode before the harmful one
# starts, so that the policy's drift onset (the first drifted batch of its 3-batch window) is the
# harmful drift's own first day and the retrain learns from its labels, not the campaign's.
_PHASES: tuple[tuple[BatchKind, int], ...] = (
    ("stable", 2),
    ("harmless_drift", 2),
    ("broken", 1),
    ("stable", 2),
    ("covariate_drift", 4),
    ("concept_drift", 5),
)
# Plans shorter than the phases: the kinds that matter most first (a 3-day plan, as the browser
# tests use, is stable, broken, covariate drift).
_SHORT_PLAN: tuple[BatchKind, ...] = ("stable", "broken", "covariate_drift", "concept_drift", "harmless_drift")

_REGION_P = np.array([0.22, 0.24, 0.20, 0.18, 0.16])
_REGION_LOG_INCOME = np.array([0.04, -0.08, 0.09, 0.07, -0.05])
_EMPLOYMENT_P = np.array([0.64, 0.15, 0.13, 0.08])  # of the non-retired
_EMPLOYMENT_LOG_INCOME = np.array([0.0, 0.05, -0.05, -1.0, -0.35])
_PURPOSE_P = np.array([0.32, 0.18, 0.12, 0.12, 0.06, 0.06, 0.06, 0.08])
_PURPOSE_P_DRIFT = np.array([0.48, 0.22, 0.05, 0.05, 0.10, 0.04, 0.02, 0.04])
_PURPOSE_MEDIAN_AMOUNT = np.array([15000, 8000, 20000, 18000, 6000, 12000, 30000, 7000])
_CHANNEL_P = np.array([0.25, 0.40, 0.22, 0.13])
_CHANNEL_P_DRIFT = np.array([0.10, 0.38, 0.40, 0.12])
# The harmless campaign: regions and channels whose effect on risk is small, fees financed into
# the quoted amount (repayments unchanged) and a form that asks for the whole career.
_REGION_P_CAMPAIGN = np.array([0.10, 0.08, 0.42, 0.30, 0.10])
_CHANNEL_P_CAMPAIGN = np.array([0.05, 0.30, 0.60, 0.05])
CAMPAIGN_AMOUNT_UPLIFT = 0.35
CAREER_SHARE = 0.08
# The harmful downturn: utilisation and debt-to-income squeezed into narrow bands. The champion
# learned to rank mostly on them; once everyone looks alike there, its scores bunch up and rank worse.
UTILIZATION_BAND = (0.7, 0.2)  # low end, width
DTI_BAND = (0.45, 0.15)
DTI_SQUEEZE = 0.8

# Default model: logit = intercept + sum of effects. Reference regime and concept-drift regime.
_REF = {
    "intercept": -2.8,
    "utilization": 2.4,
    "dti": 1.5,
    "late": 0.45,
    "log_income": -0.55,
    "age": -0.02,
    "tenure": -0.008,
    "employment": np.array([0.0, 0.25, 0.3, 0.8, -0.1]),
    "home": np.array([0.25, 0.0, -0.3, 0.2]),
    "purpose": np.array([0.15, 0.1, -0.2, -0.25, 0.35, 0.1, 0.6, 0.0]),
    "region": np.array([0.0, 0.1, -0.05, 0.0, 0.05]),
    "channel": np.array([-0.1, 0.1, 0.15, 0.35]),
}
# A synthetic-identity fraud wave plus a downturn: clean-looking, low-utilisation, short-tenure
# applicants from digital channels and the south now default; utilisation's effect flips, late
# payments stop mattering and the base rate rises.
_CONCEPT = {
    "intercept": -2.0,
    "utilization": -1.2,
    "dti": 0.2,
    "late": -0.1,
    "log_income": 0.35,
    "age": -0.045,
    "tenure": -0.02,
    "employment": np.array([0.0, 0.9, 0.6, -0.3, -0.6]),
    "home": np.array([0.6, -0.3, -0.2, 0.2]),
    "purpose": np.array([-0.2, 0.7, -0.3, 0.5, -0.4, 0.6, 0.1, 0.3]),
    "region": np.array([-0.3, 0.8, -0.2, 0.2, -0.4]),
    "channel": np.array([-0.9, 0.9, 1.0, -0.6]),
}

# fmt: off
_FIRST_NAMES = (
    "Ada", "Ahmed", "Alba", "Amir", "Anna", "Ben", "Chen", "Clara", "Dara", "David", "Elena",
    "Emeka", "Eva", "Farah", "Felix", "Grace", "Hana", "Ivan", "Jonas", "Julia", "Kai", "Lena",
    "Leo", "Lucia", "Maya", "Mateo", "Nina", "Noah", "Omar", "Priya", "Rosa", "Sam", "Sofia",
    "Tariq", "Theo", "Uma", "Victor", "Wen", "Yara", "Zoe",
)
_LAST_NAMES = (
    "Abara", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito",
    "Jansen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
    "Schmidt", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhang", "Novak", "Silva",
    "Murphy", "Kim",
)
# fmt: on
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")


@dataclass(frozen=True, eq=False)
class DemoBatch:
    """One day of incoming data: the feature file and the labels that arrive later."""

    batch_date: date
    kind: BatchKind
    fmt: FileFormat
    features: pd.DataFrame  # id, timestamp, PII and feature columns; no target
    labels: pd.DataFrame  # application_id, defaulted
    drift_strength: float  # 0 for stable/broken; how far the drift of its kind has gone


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choose_rows(rng: np.random.Generator, labels: tuple[str, ...], weights: np.ndarray) -> np.ndarray:
    """Draw one label per row from row-wise (unnormalised) weights of shape (n, k)."""
    cumulative = np.cumsum(weights, axis=1)
    cumulative /= cumulative[:, -1:]
    draws = rng.random(len(weights))[:, None]
    index = np.minimum((draws > cumulative).sum(axis=1), len(labels) - 1)
    return np.asarray(labels, dtype=object)[index]


def _index_of(values: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    lookup = {label: i for i, label in enumerate(labels)}
    return np.array([lookup[v] for v in values], dtype=int)


def _blend(a: np.ndarray, b: np.ndarray, strength: float) -> np.ndarray:
    return (1.0 - strength) * a + strength * b


def _population(rng: np.random.Generator, n: int, covariate: float, harmless: float = 0.0) -> dict[str, np.ndarray]:
    """Draw applicants; `covariate` in [0, 1] moves them towards the downturn population, `harmless`
    towards a partner campaign's (region, channel, larger quoted amounts, longer stated careers)."""
    age = np.clip(np.round(17.6 + rng.gamma(2.8, 8.0, n)), 18, 90).astype(np.int64)

    p_retired = 0.9 * _sigmoid((age - 64) / 2.5)
    employment = _choose_rows(rng, EMPLOYMENT_TYPES[:4], np.tile(_EMPLOYMENT_P, (n, 1)))
    employment = np.where(rng.random(n) < p_retired, "retired", employment).astype(object)
    emp_idx = _index_of(employment, EMPLOYMENT_TYPES)

    region = _choose_rows(rng, REGIONS, np.tile(_blend(_REGION_P, _REGION_P_CAMPAIGN, harmless), (n, 1)))
    reg_idx = _index_of(region, REGIONS)

    # The downturn lowers incomes and squeezes their spread (fewer bonuses, shorter hours).
    log_income = (
        np.log(48000)
        + _EMPLOYMENT_LOG_INCOME[emp_idx]
        + _REGION_LOG_INCOME[reg_idx]
        + 0.015 * (np.minimum(age, 55) - 40)
        - 0.32 * covariate
        + rng.normal(0.0, 0.5 * (1.0 - 0.6 * covariate), n)
    )
    income = np.round(np.exp(log_income), -1)
    rel_income = np.log(income / 50000.0)

    home_scores = np.column_stack(
        [
            np.zeros(n),
            -0.6 + 1.3 * rel_income + 0.06 * (np.clip(age, 18, 55) - 30),
            -2.4 + 0.07 * (age - 30) + 0.4 * rel_income,
            np.full(n, -2.8),
        ]
    )
    home = _choose_rows(rng, HOME_OWNERSHIP, np.exp(home_scores))
    home_idx = _index_of(home, HOME_OWNERSHIP)

    purpose_w = np.tile(_blend(_PURPOSE_P, _PURPOSE_P_DRIFT, covariate), (n, 1))
    purpose_w[:, 2] *= np.where(np.isin(home_idx, (1, 2)), 2.0, 0.5)  # home improvement: owners
    purpose_w[:, 6] *= np.where(emp_idx == 1, 3.0, 0.8)  # small business: self-employed
    purpose_w[:, 5] *= np.where(age < 30, 2.5, 0.6)  # education: young
    purpose = _choose_rows(rng, LOAN_PURPOSES, purpose_w)
    purpose_idx = _index_of(purpose, LOAN_PURPOSES)

    loan = _PURPOSE_MEDIAN_AMOUNT[purpose_idx] * (income / 50000.0) ** 0.35 * np.exp(rng.normal(0, 0.45, n))
    loan = np.clip(np.round(loan, -2), 500, 100000).astype(float)

    util_a = (1.6 + 1.3 * covariate) * np.exp(-0.008 * (age - 40))
    utilization = rng.beta(util_a, 3.0) * 1.15
    # Drawn only when drifting, so that the reference and the stable days keep their values.
    if covariate > 0:
        band = UTILIZATION_BAND[0] + UTILIZATION_BAND[1] * rng.beta(2.0, 2.0, n)
        utilization = _blend(utilization, band, covariate)
    utilization = np.clip(np.round(utilization, 3), 0.0, 1.5)

    existing_debt = rng.beta(2.0, 9.0, n) * 0.7 + 0.06 * covariate
    dti = existing_debt + 0.28 * loan / np.maximum(income, 4000.0) + 0.1 * utilization
    if covariate > 0:
        dti = _blend(dti, DTI_BAND[0] + DTI_BAND[1] * rng.beta(2.0, 2.0, n), DTI_SQUEEZE * covariate)
    dti = np.round(np.minimum(dti, 4.0), 3)

    career_months = (age - 18) * 12
    tenure = np.minimum(rng.gamma(1.3, 6 + 0.25 * career_months), career_months)
    tenure = np.where(np.isin(emp_idx, (3, 4)), 0.0, np.floor(tenure))

    late_rate = np.exp(-1.9 + 2.0 * utilization + 0.8 * (np.minimum(dti, 2.0) - 0.3) - 0.015 * (age - 40))
    late_rate *= np.where(emp_idx == 3, 1.6, 1.0)
    late = np.minimum(rng.poisson(late_rate), 15).astype(np.int64)

    channel_p = _blend(_blend(_CHANNEL_P, _CHANNEL_P_DRIFT, covariate), _CHANNEL_P_CAMPAIGN, harmless)
    channel_w = np.tile(channel_p, (n, 1))
    channel_w[:, 0] *= np.exp(0.03 * (age - 40))
    channel_w[:, 2] *= np.exp(-0.03 * (age - 40))
    channel = _choose_rows(rng, CHANNELS, channel_w)

    income_missing = rng.random(n) < np.where(emp_idx == 1, 0.09, 0.045)
    tenure_missing = rng.random(n) < np.where(np.isin(emp_idx, (1, 2)), 0.14, 0.035)

    return {
        "age": age,
        "true_income": income,
        "annual_income": np.where(income_missing, np.nan, income),
        # Quoted with the partner's financed fees: the repayments (and debt-to-income) are unchanged.
        "loan_amount": np.clip(np.round(loan * (1.0 + CAMPAIGN_AMOUNT_UPLIFT * harmless), -2), 500, 100000),
        "credit_utilization": utilization,
        "debt_to_income": dti,
        "true_tenure": tenure,
        # The partner's form asks for the whole career, not the current job: only the stated value moves.
        "months_employed": np.where(tenure_missing, np.nan, tenure + np.floor(career_months * CAREER_SHARE * harmless)),
        "num_late_payments": late,
        "employment_type": employment,
        "home_ownership": home,
        "loan_purpose": purpose,
        "region": region,
        "channel": channel,
    }


def _default_logit(pop: dict[str, np.ndarray], concept: float) -> np.ndarray:
    """Log-odds of default; `concept` in [0, 1] blends the reference and the drifted regime."""

    def coef(name: str) -> np.ndarray:
        return _blend(np.asarray(_REF[name]), np.asarray(_CONCEPT[name]), concept)

    return (
        coef("intercept")
        + coef("utilization") * (pop["credit_utilization"] - 0.4)
        + coef("dti") * (np.minimum(pop["debt_to_income"], 2.0) - 0.3)
        + coef("late") * np.minimum(pop["num_late_payments"], 5)
        + coef("log_income") * np.log(pop["true_income"] / 50000.0)
        + coef("age") * (pop["age"] - 40)
        + coef("tenure") * (np.minimum(pop["true_tenure"], 120) - 36)
        + coef("employment")[_index_of(pop["employment_type"], EMPLOYMENT_TYPES)]
        + coef("home")[_index_of(pop["home_ownership"], HOME_OWNERSHIP)]
        + coef("purpose")[_index_of(pop["loan_purpose"], LOAN_PURPOSES)]
        + coef("region")[_index_of(pop["region"], REGIONS)]
        + coef("channel")[_index_of(pop["channel"], CHANNELS)]
    )


def _timestamps(rng: np.random.Generator, days: np.ndarray, first_day: date) -> np.ndarray:
    """Application times with a daytime peak, `days` counted from `first_day`."""
    hours = np.where(rng.random(len(days)) < 0.75, rng.normal(13.5, 3.5, len(days)), rng.uniform(0, 24, len(days)))
    seconds = np.clip(np.floor(np.mod(hours, 24.0) * 3600), 0, 86399).astype("int64")
    base = np.datetime64(first_day.isoformat(), "s")
    return base + days.astype("timedelta64[D]") + seconds.astype("timedelta64[s]")


def _people(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    first = rng.choice(np.array(_FIRST_NAMES, dtype=object), n)
    last = rng.choice(np.array(_LAST_NAMES, dtype=object), n)
    number = rng.integers(1, 100, n)
    domain = rng.choice(np.array(_EMAIL_DOMAINS, dtype=object), n)
    pairs = list(zip(first, last, strict=True))
    names = np.array([f"{given} {family}" for given, family in pairs], dtype=object)
    emails = np.array(
        [
            f"{given.lower()}.{family.lower()}{k}@{d}"
            for (given, family), k, d in zip(pairs, number, domain, strict=True)
        ],
        dtype=object,
    )
    return names, emails


def _frame(
    rng: np.random.Generator,
    n: int,
    ids: list[str] | None,
    first_day: date,
    span_days: int,
    covariate: float,
    concept: float,
    harmless: float = 0.0,
) -> pd.DataFrame:
    """Full frame (id, timestamp, PII, features, target), rows in time order."""
    pop = _population(rng, n, covariate, harmless)
    defaulted = (rng.random(n) < _sigmoid(_default_logit(pop, concept))).astype(np.int64)
    stamps = _timestamps(rng, rng.integers(0, span_days, n), first_day)
    names, emails = _people(rng, n)
    order = np.argsort(stamps, kind="stable")
    frame = (
        pd.DataFrame(
            {
                TIMESTAMP_COLUMN: pd.to_datetime(stamps).astype("datetime64[ns]"),
                PII_COLUMNS[0]: names,
                PII_COLUMNS[1]: emails,
                **{name: pop[name] for name in FEATURES},
                TARGET_COLUMN: defaulted,
            }
        )
        .iloc[order]
        .reset_index(drop=True)
    )
    frame.insert(0, ID_COLUMN, ids if ids is not None else [f"ref-{i:06d}" for i in range(1, n + 1)])
    return frame


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def generate_reference(seed: int = 7, rows: int = 5000) -> pd.DataFrame:
    """Reference data (features and target) from the stable distribution, dated December 2025."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    return _frame(_rng(seed, 0), rows, None, REFERENCE_START, REFERENCE_DAYS, covariate=0.0, concept=0.0)


def scenario_plan(days: int = DEFAULT_DAYS) -> list[BatchKind]:
    """Day-by-day batch kinds: stable, harmless drift, one broken day, stable, covariate drift, concept drift.

    Other lengths keep the phases' proportions of the default plan (the broken phase is always one
    day, every phase at least one); fewer days than phases take one day of each of the first kinds
    of stable, broken, covariate drift, concept drift and harmless drift.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if days < len(_PHASES):
        return list(_SHORT_PLAN[:days])
    # Largest remainder over the phases other than the broken one.
    weights = [0 if kind == "broken" else n for kind, n in _PHASES]
    rest, total = days - 1, sum(weights)
    exact = [rest * w / total for w in weights]
    counts = [1 if kind == "broken" else max(1, int(x)) for (kind, _), x in zip(_PHASES, exact, strict=True)]
    by_remainder = sorted((i for i, w in enumerate(weights) if w), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    step = 0
    while sum(counts) < days:
        counts[by_remainder[step % len(by_remainder)]] += 1
        step += 1
    while sum(counts) > days:
        counts[max((i for i, w in enumerate(weights) if w), key=lambda i: counts[i])] -= 1
    return [kind for (kind, _), n in zip(_PHASES, counts, strict=True) for _ in range(n)]


def _strengths(plan: list[BatchKind]) -> list[float]:
    """Drift strength per day: harmless drift 1 (a campaign starts at once), covariate drift
    from 0.85 to 1 (harmful from its first day), concept drift from 0.7 to 1."""
    ramps = {"covariate_drift": 0.85, "concept_drift": 0.7}
    totals = {kind: plan.count(kind) for kind in ramps}
    seen = dict.fromkeys(ramps, 0)
    strengths: list[float] = []
    for kind in plan:
        if kind in ramps:
            step = seen[kind] / (totals[kind] - 1) if totals[kind] > 1 else 1.0
            seen[kind] += 1
            strengths.append(round(ramps[kind] + (1.0 - ramps[kind]) * step, 4))
        else:
            strengths.append(1.0 if kind == "harmless_drift" else 0.0)
    return strengths


def _break(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Drop credit_utilization and plant impossible ages; the file stays readable."""
    broken = frame.drop(columns=[BROKEN_MISSING_COLUMN])
    n_bad = max(2, int(round(0.03 * len(broken))))
    rows = rng.choice(len(broken), size=min(n_bad, len(broken)), replace=False)
    ages = broken["age"].to_numpy().copy()
    ages[rows] = np.resize(np.array(BROKEN_AGES, dtype=np.int64), len(rows))
    broken["age"] = ages
    return broken


def generate_scenario(
    start: date, days: int = DEFAULT_DAYS, seed: int = 7, rows_per_day: int = 2000
) -> list[DemoBatch]:
    """One batch per day from `start`, following `scenario_plan(days)`; parquet on even days."""
    if rows_per_day < 1:
        raise ValueError("rows_per_day must be at least 1")
    plan = scenario_plan(days)
    batches: list[DemoBatch] = []
    for offset, (kind, strength) in enumerate(zip(plan, _strengths(plan), strict=True)):
        day = start + timedelta(days=offset)
        rng = _rng(seed, 1, offset)
        ids = [f"{day:%Y%m%d}-{i:06d}" for i in range(1, rows_per_day + 1)]
        covariate = strength if kind == "covariate_drift" else 0.0
        concept = strength if kind == "concept_drift" else 0.0
        harmless = strength if kind == "harmless_drift" else 0.0
        full = _frame(rng, rows_per_day, ids, day, 1, covariate=covariate, concept=concept, harmless=harmless)
        labels = full[[ID_COLUMN, TARGET_COLUMN]].copy()
        features = full.drop(columns=[TARGET_COLUMN])
        if kind == "broken":
            features = _break(features, rng)
        fmt: FileFormat = "parquet" if (offset + 1) % 2 == 0 else "csv"
        batches.append(DemoBatch(day, kind, fmt, features, labels, float(strength)))
    return batches


def to_bytes(frame: pd.DataFrame, fmt: FileFormat) -> bytes:
    """Serialise a frame: CSV with a header and no index, or Parquet via pyarrow."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow", index=False)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r}; use 'csv' or 'parquet'")
