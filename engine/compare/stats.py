"""Paired significance statistics for comparing two runs on the same rows.

Everything here is paired: row i of run A is compared with row i of run B, which removes the
row-to-row difficulty variance and makes small evaluation sets usable. Each procedure gives a
p-value and intervals at any level that agree with it: the interval at level 1 - alpha
excludes 0 exactly when the p-value is below alpha, so a verdict never has to choose between
them. Right/wrong scores use McNemar's exact test and the interval that inverts it; other
metrics use a BCa bootstrap and the p-value that inverts it. Resampling is seeded, so the same
inputs always print the same numbers. numpy and scipy are imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    BatchStatistic = Callable[[np.ndarray], np.ndarray]
    """Maps a (batch, m) array of row indices to a (batch,) array of metric values."""

ALPHA = 0.05
POWER = 0.8
_CELLS_PER_BATCH = 1_000_000
"""Resamples are evaluated in batches of at most this many index cells to bound memory."""
_BISECTION_STEPS = 32


@dataclass(frozen=True)
class TestResult:
    """A paired significance test: which one and its two-sided p-value."""

    test: str
    p_value: float
    statistic: float


class PairedProcedure(Protocol):
    """A paired test of delta (B - A) = 0 with the confidence intervals that invert it."""

    @property
    def test(self) -> str: ...

    @property
    def delta(self) -> float: ...

    @property
    def p_value(self) -> float: ...

    def interval(self, confidence: float) -> tuple[float, float]:
        """The interval of delta at this level; it excludes 0 iff p_value < 1 - confidence."""
        ...


def excludes_zero(interval: tuple[float, float]) -> bool:
    return interval[0] > 0 or interval[1] < 0


def mean_statistic(values: Sequence[float] | np.ndarray) -> BatchStatistic:
    """A batch statistic: the mean of per-example values over each resample."""
    import numpy as np

    array = np.asarray(values, dtype=float)

    def stat(indices: np.ndarray) -> np.ndarray:
        return np.asarray(array[indices].mean(axis=1))

    return stat


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


@dataclass(frozen=True)
class ExactPairedAccuracy:
    """McNemar's exact test on right/wrong rows and the interval of the accuracy difference
    that inverts it.

    Conditional on the d = fixed + broken discordant rows, fixed ~ Binomial(d, p) and the
    accuracy difference is (2p - 1) d / n. The Clopper-Pearson interval of p (the inversion
    of the exact binomial test) mapped to that scale excludes 0 exactly when the test rejects.
    """

    fixed: int
    broken: int
    rows: int
    test: str = "mcnemar-exact"

    def __post_init__(self) -> None:
        if self.rows < 1 or self.fixed < 0 or self.broken < 0:
            raise ValueError("counts must be non-negative and rows positive")
        if self.fixed + self.broken > self.rows:
            raise ValueError("more discordant rows than rows")

    @property
    def delta(self) -> float:
        return (self.fixed - self.broken) / self.rows

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.fixed, self.broken).p_value

    def interval(self, confidence: float) -> tuple[float, float]:
        from scipy.stats import binomtest

        discordant = self.fixed + self.broken
        if discordant == 0:
            return (0.0, 0.0)
        ci = binomtest(self.fixed, discordant, 0.5).proportion_ci(confidence, method="exact")
        scale = discordant / self.rows
        return ((2 * float(ci.low) - 1) * scale, (2 * float(ci.high) - 1) * scale)


def _cached_delta(stat_a: BatchStatistic, stat_b: BatchStatistic) -> Callable[..., Any]:
    """stat_b - stat_a as a scipy vectorized statistic over index arrays of any shape.

    The BCa jackknife is the same on every re-evaluation at a new level, so results are
    memoized by the index array's bytes.
    """
    import numpy as np

    cache: dict[tuple[tuple[int, ...], bytes], np.ndarray] = {}

    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(indices, dtype=np.intp), axis, -1)
        key = (idx.shape, idx.tobytes())
        if key not in cache:
            flat = idx.reshape(-1, idx.shape[-1])
            cache[key] = (stat_b(flat) - stat_a(flat)).reshape(idx.shape[:-1])
        return cache[key]

    return statistic


@dataclass
class BootstrapDelta:
    """A paired BCa bootstrap of stat_b - stat_a, resampling rows jointly for both runs, and
    the p-value that inverts it (the smallest alpha whose interval excludes 0).

    Falls back to the percentile interval (and its inversion) when BCa cannot be computed,
    e.g. every resample on one side of the observed value; `test` says which.

    Args:
        stat_a: metric of run A over a batch of resamples (see `mean_statistic`); corpus
            metrics (BLEU, macro-F1) pass a callable that recomputes the metric per resample.
        stat_b: the same for run B.
        n_rows: how many paired rows there are.
        n_boot: bootstrap replications.
        seed: the resampling seed; the same seed gives the same numbers.
    """

    stat_a: BatchStatistic
    stat_b: BatchStatistic
    n_rows: int
    n_boot: int = 2000
    seed: int = 0
    method: str = field(init=False, default="BCa")
    delta: float = field(init=False, default=0.0)
    standard_error: float = field(init=False, default=0.0)
    degenerate: bool = field(init=False, default=False)
    """Every resample gives the observed delta: no variation to speak of, so the interval is
    that point at every level."""
    _result: Any = field(init=False, default=None, repr=False)
    _statistic: Any = field(init=False, default=None, repr=False)
    _p_value: float | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        import warnings

        import numpy as np

        if self.n_rows < 2:
            raise ValueError("a bootstrap needs at least two rows")
        self._statistic = _cached_delta(self.stat_a, self.stat_b)
        everything = np.arange(self.n_rows)
        self.delta = float(self._statistic(everything[None, :])[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._result = self._bootstrap(0.95, n_resamples=self.n_boot)
        distribution = np.asarray(self._result.bootstrap_distribution)
        self.standard_error = float(distribution.std(ddof=1))
        spread = np.abs(distribution - self.delta)
        self.degenerate = bool(np.all(spread <= 1e-12 * max(1.0, abs(self.delta))))
        if self.degenerate:
            return
        if not all(map(math.isfinite, self._raw_interval(0.95))):
            self.method = "percentile"

    @property
    def test(self) -> str:
        return f"paired bootstrap ({self.method})"

    def _bootstrap(self, confidence: float, n_resamples: int = 0) -> Any:
        import numpy as np
        from scipy.stats import bootstrap

        return bootstrap(
            (np.arange(self.n_rows),),
            self._statistic,
            n_resamples=n_resamples,
            batch=max(1, _CELLS_PER_BATCH // self.n_rows),
            vectorized=True,
            confidence_level=confidence,
            method=self.method,
            bootstrap_result=self._result,
            rng=np.random.default_rng(self.seed),
        )

    def _raw_interval(self, confidence: float) -> tuple[float, float]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = self._bootstrap(confidence).confidence_interval
        return (float(ci.low), float(ci.high))

    def interval(self, confidence: float) -> tuple[float, float]:
        if self.degenerate:
            return (self.delta, self.delta)
        return self._raw_interval(confidence)

    @property
    def p_value(self) -> float:
        """The smallest alpha at which the interval excludes 0, by bisection; at least
        1 / (n_boot + 1), the finest a bootstrap of n_boot resamples resolves."""
        if self._p_value is None:
            self._p_value = self._invert()
        return self._p_value

    def _invert(self) -> float:
        if self.degenerate:
            return 1.0 if self.delta == 0 else 0.0
        floor, top = 1 / (self.n_boot + 1), 1 - 1e-9
        if excludes_zero(self.interval(1 - floor)):
            return floor
        if not excludes_zero(self.interval(1 - top)):
            return 1.0
        low, high = floor, top  # the interval at 1 - low includes 0; at 1 - high it does not
        for _ in range(_BISECTION_STEPS):
            middle = (low + high) / 2
            if excludes_zero(self.interval(1 - middle)):
                high = middle
            else:
                low = middle
        return high


def holm_levels(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """The level each of several tests is judged at under Holm's step-down procedure.

    Sorted by p-value, the k-th smallest (from 0) is tested at alpha / (m - k) while every
    smaller one was rejected; from the first that is not, the rest keep that level. A test
    rejects iff its p-value is below its level, which is iff its Holm-adjusted p-value is
    below alpha, and an interval at 1 - level agrees with it.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [alpha] * m
    stopped: float | None = None
    for rank, i in enumerate(order):
        level = stopped if stopped is not None else alpha / (m - rank)
        levels[i] = level
        if stopped is None and not p_values[i] < level:
            stopped = level
    return levels


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values (family-wise error control), in input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


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
