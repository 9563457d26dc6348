"""Report arithmetic: rates with 95 % Wilson intervals and the lift of one variant over another.

Pure functions, no Django. Rates are per visitor (session) so that each one is a proportion: a visitor
who clicks three products counts as one visitor who clicked.

Lift is the relative difference of two rates, ``p_visual / p_control - 1``. Its interval is the Katz
log method for a ratio of two independent proportions: ``ln(ratio) ± z * sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2)``,
transformed back. It is undefined (``None``) when either variant has no successes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class Proportion:
    successes: int
    trials: int
    rate: float | None  # None when there were no trials
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Lift:
    ratio: float  # p1 / p2
    lift: float  # ratio - 1, e.g. 0.25 = "25 % better"
    low: float  # interval of the lift
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes "no difference"."""
        return self.low > 0 or self.high < 0


def wilson_interval(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion; (0, 1) when there were no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must be between 0 and trials ({trials})")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # At p = 0 or 1 one bound is exactly 0 or 1; computing it leaves rounding noise.
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == trials else min(1.0, centre + half_width)
    return low, high


def proportion(successes: int, trials: int, *, z: float = Z_95) -> Proportion:
    if trials <= 0:
        return Proportion(successes=successes, trials=trials, rate=None, low=None, high=None)
    low, high = wilson_interval(successes, trials, z=z)
    return Proportion(successes=successes, trials=trials, rate=successes / trials, low=low, high=high)


def rate_ratio_lift(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, *, z: float = Z_95
) -> Lift | None:
    """The lift of rate A over rate B with the Katz log interval; None when it is undefined."""
    if min(successes_a, successes_b, trials_a, trials_b) <= 0:
        return None
    if successes_a > trials_a or successes_b > trials_b:
        raise ValueError("successes cannot exceed trials")
    ratio = (successes_a / trials_a) / (successes_b / trials_b)
    standard_error = math.sqrt(1 / successes_a - 1 / trials_a + 1 / successes_b - 1 / trials_b)
    log_ratio = math.log(ratio)
    return Lift(
        ratio=ratio,
        lift=ratio - 1,
        low=math.exp(log_ratio - z * standard_error) - 1,
        high=math.exp(log_ratio + z * standard_error) - 1,
    )
