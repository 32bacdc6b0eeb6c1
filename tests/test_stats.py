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


def test_bootstrap_is_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50) + 0.2
    first = stats.paired_bootstrap_ci(stats.mean_statistic(a), stats.mean_statistic(b), 50, seed=7)
    again = stats.paired_bootstrap_ci(stats.mean_statistic(a), stats.mean_statistic(b), 50, seed=7)
    other = stats.paired_bootstrap_ci(stats.mean_statistic(a), stats.mean_statistic(b), 50, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.delta == pytest.approx(float(np.mean(b - a)))


def test_bootstrap_interval_covers_the_true_delta_at_the_stated_rate() -> None:
    rng = np.random.default_rng(2024)
    true_delta, n, replications = 0.3, 40, 200
    covered = 0
    for replication in range(replications):
        difficulty = rng.normal(size=n)
        a = difficulty + rng.normal(size=n)
        b = difficulty + true_delta + rng.normal(size=n)
        ci = stats.paired_bootstrap_ci(
            stats.mean_statistic(a), stats.mean_statistic(b), n, n_boot=400, seed=replication
        )
        covered += ci.low <= true_delta <= ci.high
    # 95% nominal; the percentile bootstrap runs slightly narrow at n=40.
    assert 0.88 <= covered / replications <= 0.99


def test_bootstrap_interval_for_a_corpus_statistic() -> None:
    # A ratio-of-sums statistic is not a mean of per-row values; the callable recomputes it.
    num_a, den = np.array([1.0, 2, 3, 4, 5, 6]), np.array([2.0, 2, 2, 2, 2, 2])
    num_b = num_a + 1

    def ratio(num: np.ndarray) -> stats.BatchStatistic:
        return lambda idx: num[idx].sum(axis=1) / den[idx].sum(axis=1)

    ci = stats.paired_bootstrap_ci(ratio(num_a), ratio(num_b), 6, n_boot=500, seed=0)
    assert ci.delta == pytest.approx(0.5)
    assert ci.low == pytest.approx(0.5) and ci.high == pytest.approx(0.5)
    assert ci.p_value < 0.01


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=2, max_size=60),
    st.integers(0, 10_000),
)
def test_bootstrap_interval_contains_the_observed_delta(
    pairs: list[tuple[float, float]], seed: int
) -> None:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    ci = stats.paired_bootstrap_ci(
        stats.mean_statistic(a), stats.mean_statistic(b), len(pairs), n_boot=300, seed=seed
    )
    slack = 1e-9 * max(1.0, float(np.abs(b - a).max()))
    assert ci.low - slack <= ci.delta <= ci.high + slack
    assert 0.0 < ci.p_value <= 1.0


def test_sign_flip_exact_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=9), rng.normal(size=9) + 0.8
    ours = stats.sign_flip_test(a, b)
    reference = sps.permutation_test(
        (b, a),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    assert ours.test.endswith("(exact)")
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9)


def test_sign_flip_monte_carlo_agrees_with_a_paired_t_test_on_normal_data() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=200)
    b = a + 0.15 + rng.normal(scale=1.0, size=200)
    ours = stats.sign_flip_test(a, b, n_perm=20_000, seed=1)
    assert ours.p_value == pytest.approx(sps.ttest_rel(b, a).pvalue, abs=0.02)
    assert stats.sign_flip_test(a, a).p_value == 1.0


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
