"""The paired statistics against hand-computed tables, scipy, and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from tunelab.engine.compare import stats


def test_mcnemar_exact_matches_a_hand_computed_table() -> None:
    # 10 fixed, 2 broken: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096.
    result = stats.mcnemar_exact(10, 2)
    assert result.test == "mcnemar-exact"
    assert result.p_value == pytest.approx(158 / 4096, rel=1e-12)
    assert stats.mcnemar_exact(2, 10).p_value == pytest.approx(result.p_value)


def test_mcnemar_exact_edge_cases() -> None:
    assert stats.mcnemar_exact(0, 0).p_value == 1.0
    assert stats.mcnemar_exact(5, 5).p_value == 1.0
    # 6 vs 0: 2 / 2**6.
    assert stats.mcnemar_exact(6, 0).p_value == pytest.approx(2 / 64)


def test_the_exact_interval_inverts_the_binomial_test_by_hand() -> None:
    # 4 fixed, 0 broken of 10 rows: Clopper-Pearson for 4/4 is [0.025 ** (1/4), 1], mapped to
    # the accuracy difference by (2p - 1) * 4 / 10; it includes 0, as p = 2 / 16 says.
    exact = stats.ExactPairedAccuracy(4, 0, 10)
    low, high = exact.interval(0.95)
    assert low == pytest.approx((2 * 0.025**0.25 - 1) * 0.4) and high == pytest.approx(0.4)
    assert exact.p_value == pytest.approx(0.125) and exact.delta == pytest.approx(0.4)
    assert low < 0 < high
    assert stats.ExactPairedAccuracy(0, 0, 5).interval(0.95) == (0.0, 0.0)
    with pytest.raises(ValueError):
        stats.ExactPairedAccuracy(4, 4, 6)


LEVELS = (0.8, 0.9, 0.95, 0.975, 0.99, 1 - 0.05 / 3, 0.999)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 200), st.sampled_from(LEVELS))
def test_the_paired_accuracy_interval_excludes_0_exactly_when_the_test_rejects(
    fixed: int, broken: int, concordant: int, confidence: float
) -> None:
    rows = fixed + broken + concordant
    if rows == 0:
        return
    exact = stats.ExactPairedAccuracy(fixed, broken, rows)
    interval = exact.interval(confidence)
    assert stats.excludes_zero(interval) == (exact.p_value < 1 - confidence)
    assert interval[0] - 1e-12 <= exact.delta <= interval[1] + 1e-12
    assert -1 <= interval[0] <= interval[1] <= 1


def _bootstrap(a: np.ndarray, b: np.ndarray, **kw: int) -> stats.BootstrapDelta:
    return stats.BootstrapDelta(stats.mean_statistic(a), stats.mean_statistic(b), len(a), **kw)


def test_the_bootstrap_is_scipys_bca_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50) + 0.2
    first, again = _bootstrap(a, b, seed=7), _bootstrap(a, b, seed=7)
    other = _bootstrap(a, b, seed=8)
    assert first.test == "paired bootstrap (BCa)"
    assert first.interval(0.95) == again.interval(0.95) and first.p_value == again.p_value
    assert first.interval(0.95) != other.interval(0.95)
    assert first.delta == pytest.approx(float(np.mean(b - a)))
    reference = sps.bootstrap(
        (b - a,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(7)
    )
    # Same method, same number of resamples; the draws differ (indices versus values).
    ci = reference.confidence_interval
    assert first.interval(0.95) == pytest.approx((ci.low, ci.high), abs=0.05)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=2, max_size=40),
    st.integers(0, 10_000),
)
def test_the_bootstrap_p_value_agrees_with_its_intervals(
    pairs: list[tuple[float, float]], seed: int
) -> None:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    boot = _bootstrap(a, b, n_boot=300, seed=seed)
    assert 0.0 <= boot.p_value <= 1.0
    for confidence in (0.9, 0.95, 0.99):
        alpha = 1 - confidence
        if abs(boot.p_value - alpha) < 1e-6:
            continue  # within the bisection's tolerance of the level
        assert stats.excludes_zero(boot.interval(confidence)) == (boot.p_value < alpha)


def test_a_bootstrap_with_no_variation_is_a_point() -> None:
    # A ratio-of-sums statistic is not a mean of per-row values; the callable recomputes it.
    num_a, den = np.array([1.0, 2, 3, 4, 5, 6]), np.array([2.0, 2, 2, 2, 2, 2])
    num_b = num_a + 1

    def ratio(num: np.ndarray) -> stats.BatchStatistic:
        return lambda idx: num[idx].sum(axis=1) / den[idx].sum(axis=1)

    boot = stats.BootstrapDelta(ratio(num_a), ratio(num_b), 6, n_boot=500)
    assert boot.delta == pytest.approx(0.5) and boot.degenerate
    assert boot.interval(0.95) == (boot.delta, boot.delta) and boot.p_value == 0.0
    same = stats.BootstrapDelta(ratio(num_a), ratio(num_a), 6, n_boot=500)
    assert same.interval(0.95) == (0.0, 0.0) and same.p_value == 1.0
    with pytest.raises(ValueError, match="two rows"):
        _bootstrap(np.array([1.0]), np.array([3.0]))


def test_the_bootstrap_interval_covers_the_true_delta_at_about_the_stated_rate() -> None:
    rng = np.random.default_rng(2024)
    true_delta, n, replications = 0.3, 40, 120
    covered = 0
    for replication in range(replications):
        difficulty = rng.normal(size=n)
        a = difficulty + rng.normal(size=n)
        b = difficulty + true_delta + rng.normal(size=n)
        low, high = _bootstrap(a, b, n_boot=400, seed=replication).interval(0.95)
        covered += low <= true_delta <= high
    assert 0.87 <= covered / replications <= 0.995


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 of 3: thresholds 0.05/3, 0.05/2, then stop at 0.025.
    p = [0.01, 0.04, 0.03]
    assert stats.holm_adjusted(p) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm_levels(p) == pytest.approx([0.05 / 3, 0.025, 0.025])
    assert stats.holm_levels([0.2]) == [0.05] and stats.holm_adjusted([0.2]) == [0.2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.sampled_from((0.01, 0.05, 0.1)))
def test_holm_levels_reject_exactly_what_the_adjusted_p_values_reject(
    p_values: list[float], alpha: float
) -> None:
    levels = stats.holm_levels(p_values, alpha)
    adjusted = stats.holm_adjusted(p_values)
    for p, level, adj in zip(p_values, levels, adjusted, strict=True):
        assert alpha / len(p_values) - 1e-15 <= level <= alpha
        assert (p < level) == (adj < alpha)
        assert p <= adj <= 1.0


def test_rows_needed_for_paired_proportions_matches_the_formula_by_hand() -> None:
    # p10 = 0.175, p01 = 0.075: psi = 0.25, delta = 0.1.
    # (1.959964 * 0.5 + 0.841621 * sqrt(0.24))^2 / 0.01 = 193.85 -> 194.
    assert stats.rows_needed_paired_proportions(35, 15, 200) == 194
    assert stats.rows_needed_paired_proportions(10, 10, 200) is None


def test_rows_needed_for_paired_proportions_gives_about_80_percent_power() -> None:
    p_fixed, p_broken = 0.15, 0.05
    n = stats.rows_needed_paired_proportions(30, 10, 200)
    assert n is not None
    rng = np.random.default_rng(5)
    cells = rng.multinomial(n, [p_fixed, p_broken, 1 - p_fixed - p_broken], size=4000)
    fixed, broken = cells[:, 0], cells[:, 1]
    p = np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(fixed, broken), fixed + broken, 0.5))
    power = float(np.mean(p < 0.05))
    assert 0.72 <= power <= 0.88


def test_rows_needed_for_a_paired_mean_matches_the_noncentral_t() -> None:
    # dz = 0.5 at alpha 0.05 two-sided and power 0.8 needs 34 pairs (G*Power's table).
    n = stats.rows_needed_paired_mean(0.5, 1.0)
    assert n == 34

    def power(rows: int) -> float:
        df, nc = rows - 1, 0.5 * math.sqrt(rows)
        crit = sps.t.ppf(0.975, df)
        return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))

    assert power(n) >= 0.8 > power(n - 1)
    assert stats.rows_needed_paired_mean(0.0, 1.0) is None
    assert stats.rows_needed_paired_mean(-0.5, 1.0) == 34


def test_percentile_of_nothing_is_none() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([1.0, 2.0, 3.0], 50) == 2.0
