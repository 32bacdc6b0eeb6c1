"""Paired significance statistics for comparing two runs on the same rows.

Everything here is paired: row i of run A is compared with row i of run B, which removes the
row-to-row difficulty variance and makes small evaluation sets usable. Resampling is seeded,
so the same inputs always print the same numbers. numpy and scipy are imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    BatchStatistic = Callable[[np.ndarray], np.ndarray]
    """Maps a (batch, n) array of row indices to a (batch,) array of metric values."""

ALPHA = 0.05
POWER = 0.8
_CELLS_PER_BATCH = 1_000_000
"""Resample indices are drawn in batches of at most this many cells to bound memory."""
_EXACT_SIGN_FLIP_MAX_ROWS = 16


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval of a delta (B - A)."""

    delta: float
    low: float
    high: float
    confidence: float
    n_boot: int
    p_value: float
    """Two-sided paired bootstrap test of delta = 0 (shift method), from the same resamples."""


@dataclass(frozen=True)
class TestResult:
    """A paired significance test: which one and its two-sided p-value."""

    test: str
    p_value: float
    statistic: float


def mean_statistic(values: Sequence[float] | np.ndarray) -> BatchStatistic:
    """A batch statistic: the mean of per-example values over each resample."""
    import numpy as np

    array = np.asarray(values, dtype=float)

    def stat(indices: np.ndarray) -> np.ndarray:
        return np.asarray(array[indices].mean(axis=1))

    return stat


def paired_bootstrap_ci(
    stat_a: BatchStatistic,
    stat_b: BatchStatistic,
    n_rows: int,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Percentile bootstrap CI of stat_b - stat_a, resampling row indices jointly for both runs.

    Args:
        stat_a: metric of run A over a batch of resamples (see `mean_statistic`); corpus
            metrics (BLEU, macro-F1) pass a callable that recomputes the metric per resample.
        stat_b: the same for run B.
        n_rows: how many paired rows there are.
        n_boot: bootstrap replications.
        seed: the resampling seed; the same seed gives the same interval.
        confidence: the interval's coverage, e.g. 0.95.
    """
    import numpy as np

    if n_rows < 1:
        raise ValueError("a bootstrap needs at least one row")
    everything = np.arange(n_rows)[None, :]
    delta = float(stat_b(everything)[0] - stat_a(everything)[0])
    rng = np.random.default_rng(seed)
    batch = max(1, _CELLS_PER_BATCH // n_rows)
    deltas: list[np.ndarray] = []
    done = 0
    while done < n_boot:
        size = min(batch, n_boot - done)
        indices = rng.integers(0, n_rows, size=(size, n_rows))
        deltas.append(stat_b(indices) - stat_a(indices))
        done += size
    boot = np.concatenate(deltas)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    extreme = np.abs(boot - delta) >= abs(delta) - 1e-12
    p_value = 1.0 if delta == 0 else float((extreme.sum() + 1) / (n_boot + 1))
    return Interval(delta, float(low), float(high), confidence, n_boot, min(1.0, p_value))


def mcnemar_exact(fixed: int, broken: int) -> TestResult:
    """McNemar's exact test: a two-sided binomial test on the discordant pairs.

    Args:
        fixed: rows A got wrong and B got right.
        broken: rows A got right and B got wrong.
    """
    from scipy.stats import binomtest

    discordant = fixed + broken
    if discordant == 0:
        return TestResult("mcnemar-exact", 1.0, 0.0)
    result = binomtest(fixed, discordant, 0.5, alternative="two-sided")
    return TestResult("mcnemar-exact", float(result.pvalue), float(fixed))


def sign_flip_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_perm: int = 10000,
    seed: int = 0,
) -> TestResult:
    """Paired permutation test of mean(b - a) = 0 by flipping the sign of each difference.

    Exact (all 2^n sign patterns) up to 16 rows, Monte Carlo with a seeded generator above.
    """
    import numpy as np

    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = diffs.size
    observed = float(diffs.mean()) if n else 0.0
    if n == 0 or not np.any(diffs):
        return TestResult("sign-flip permutation", 1.0, observed)
    tolerance = 1e-12 * max(1.0, abs(observed))
    if n <= _EXACT_SIGN_FLIP_MAX_ROWS:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        stats = (patterns * diffs).mean(axis=1)
        p = float(np.mean(np.abs(stats) >= abs(observed) - tolerance))
        return TestResult("sign-flip permutation (exact)", p, observed)
    rng = np.random.default_rng(seed)
    batch = max(1, _CELLS_PER_BATCH // n)
    extreme = 0
    done = 0
    while done < n_perm:
        size = min(batch, n_perm - done)
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        extreme += int(np.sum(np.abs((signs * diffs).mean(axis=1)) >= abs(observed) - tolerance))
        done += size
    return TestResult("sign-flip permutation", (extreme + 1) / (n_perm + 1), observed)


def rows_needed_paired_proportions(
    fixed: int, broken: int, n_rows: int, *, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Rows needed for McNemar's test to detect the observed effect (Connor 1987).

    n = (z_(1-alpha/2) * sqrt(psi) + z_power * sqrt(psi - delta^2))^2 / delta^2, with psi the
    discordant proportion and delta the difference of the two discordant proportions.
    None when the observed effect is zero.
    """
    from scipy.stats import norm

    if n_rows < 1 or fixed == broken:
        return None
    p_fixed, p_broken = fixed / n_rows, broken / n_rows
    psi = p_fixed + p_broken
    delta = p_fixed - p_broken
    z_alpha = norm.ppf(1 - alpha / 2)
    z_power = norm.ppf(power)
    n = (z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - delta**2, 0.0))) ** 2 / delta**2
    return math.ceil(n - 1e-9)


def rows_needed_paired_mean(
    mean_diff: float, sd_diff: float, *, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Rows needed for a two-sided paired t-test to detect `mean_diff` given the SD of differences.

    Solves n = ((t_(1-alpha/2, n-1) + t_(power, n-1)) * sd / delta)^2 by fixed-point iteration
    from the normal approximation. None when the observed effect is zero.
    """
    from scipy.stats import norm, t

    if mean_diff == 0 or not math.isfinite(mean_diff):
        return None
    if sd_diff <= 0:
        return 2
    ratio = sd_diff / abs(mean_diff)
    n = max(2.0, ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * ratio) ** 2)
    for _ in range(50):
        df = max(n - 1, 1.0)
        updated = max(2.0, ((t.ppf(1 - alpha / 2, df) + t.ppf(power, df)) * ratio) ** 2)
        if abs(updated - n) < 1e-6:
            break
        n = updated
    return math.ceil(n - 1e-9)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, None for no values."""
    import numpy as np

    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))
