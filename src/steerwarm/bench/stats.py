"""Statistics of the paper: Wilson intervals, paired McNemar tests with Benjamini-Hochberg FDR and Cohen's g,
Cohen's kappa for judge agreement, and logistic regressions with average marginal effects (models 1-4).

Definitions:
- Wilson score interval for k errors in n at 95% (z = 1.959964).
- McNemar on paired outcomes of targets A and B: b = A correct & B wrong, c = A wrong & B correct. Exact two-sided
  binomial test (p = min(1, 2 * P[X <= min(b, c)]), X ~ Bin(b + c, 1/2)) when b + c < 25, else the chi-square test
  with continuity correction, (|b - c| - 1)^2 / (b + c) on 1 degree of freedom (statsmodels' conventions).
- Cohen's g = |b / (b + c) - 1/2| (Cohen 1988; small 0.05, medium 0.15, large 0.25); discordant odds ratio b / c.
  (The paper's summary tables label a different, unbounded statistic "Cohen's g"; ours is Cohen's.)
- Benjamini-Hochberg step-up adjusted p-values (monotone, capped at 1; NaN entries are left out and kept NaN).
- Regressions: logit of is_incorrect with statsmodels formulas; the effect of the target (is_target = 1 for run B,
  0 for the reference run A) is reported as an average marginal effect, AME = mean over rows of
  P(y | is_target = 1) - P(y | is_target = 0), within a subgroup where the model has an interaction, with a
  delta-method standard error from the fit's covariance. For a model without interactions this equals statsmodels'
  `get_margeff(at="overall", dummy=True)`.
  A continuous `var` (a dial value) gets the derivative-based AME instead, mean over rows of dP(y)/d var =
  p (1 - p) d(eta)/d var, where d(eta)/d var is the design matrix's central difference in `var` times the
  coefficients (exact for terms linear in `var`, interactions included); per unit of `var`, delta-method standard
  error. Without interactions this equals `get_margeff(at="overall", method="dydx")`. With `by` and two levels,
  `difference=True` adds the difference of the two levels' AMEs (second minus first, level "b - a") with its
  delta-method standard error from the two gradients together. `cluster` fits with standard errors robust to
  correlation within the named column's groups (statsmodels' cov_type="cluster"), e.g. one item's prompts.
  Model 1: no context, no belief (original + original_neutral, unmodified): y ~ is_target + C(task).
  Model 2: original template, by context group: y ~ is_target * C(group) + C(task); AME per group.
  Model 3: original template, by context: y ~ is_target * C(condition) + C(task); AME per condition.
  Model 4: all prompts, belief interaction: y ~ is_target * has_belief + C(task) + C(condition); AME by belief.
  (The paper also has a model term when several model pairs are pooled; a comparison here is one pair.)

Invariant: every function is a pure function of its inputs; regressions that cannot be fitted (one outcome only,
perfect separation, a singular design) return a result carrying the reason instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

Z95 = 1.959963984540054
EXACT_BELOW = 25


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is 0 (1) exactly; rounding would leave it a hair inside, above the rate itself
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


@dataclass(frozen=True)
class McNemar:
    b: int
    c: int
    statistic: float
    p_value: float
    method: str  # "exact" | "chi2-cc" | "none"

    @property
    def cohens_g(self) -> float:
        return cohens_g(self.b, self.c)

    @property
    def odds_ratio(self) -> float:
        if self.c == 0:
            return math.inf if self.b > 0 else math.nan
        return self.b / self.c


def mcnemar(b: int, c: int, exact_below: int = EXACT_BELOW) -> McNemar:
    from scipy import stats

    n = b + c
    if n == 0:
        return McNemar(b, c, math.nan, 1.0, "none")
    if n < exact_below:
        p = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        return McNemar(b, c, float(min(b, c)), p, "exact")
    stat = (abs(b - c) - 1) ** 2 / n
    return McNemar(b, c, stat, float(stats.chi2.sf(stat, 1)), "chi2-cc")


def paired_counts(a_incorrect: Sequence[int], b_incorrect: Sequence[int]) -> tuple[int, int]:
    """(b, c) = (#A correct & B wrong, #A wrong & B correct) over pairs."""
    if len(a_incorrect) != len(b_incorrect):
        raise ValueError("paired outcomes must have equal length")
    b = sum(1 for x, y in zip(a_incorrect, b_incorrect, strict=True) if x == 0 and y == 1)
    c = sum(1 for x, y in zip(a_incorrect, b_incorrect, strict=True) if x == 1 and y == 0)
    return b, c


def cohens_g(b: int, c: int) -> float:
    return abs(b / (b + c) - 0.5) if b + c else math.nan


def g_label(g: float) -> str:
    if math.isnan(g):
        return "n/a"
    return "large" if g >= 0.25 else "medium" if g >= 0.15 else "small" if g >= 0.05 else "negligible"


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m = len(idx)
    if m == 0:
        return out
    order = sorted(idx, key=lambda i: pvalues[i])
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        out[i] = min(1.0, running)
    return out


def cohen_kappa(a: Sequence[object], b: Sequence[object]) -> float:
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    n = len(a)
    labels = sorted({*a, *b}, key=str)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pe = sum((sum(x == lab for x in a) / n) * (sum(y == lab for y in b) / n) for lab in labels)
    if pe == 1.0:
        return 1.0 if po == 1.0 else math.nan
    return (po - pe) / (1 - pe)


# -- regressions ----------------------------------------------------------------------------------------------------
@dataclass
class Effect:
    """An average marginal effect of is_target (in probability units) within one subgroup."""

    level: str
    ame: float
    se: float
    n: int

    @property
    def ci(self) -> tuple[float, float]:
        return self.ame - Z95 * self.se, self.ame + Z95 * self.se

    @property
    def p_value(self) -> float:
        from scipy import stats

        if not self.se or math.isnan(self.se):
            return math.nan
        return float(2 * stats.norm.sf(abs(self.ame / self.se)))


@dataclass
class RegressionResult:
    name: str
    formula: str
    n: int
    effects: list[Effect] = field(default_factory=list)
    error: str | None = None
    odds_ratio: float = math.nan

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "formula": self.formula, "n": self.n, "error": self.error,
                "odds_ratio": self.odds_ratio,
                "effects": [{"level": e.level, "ame": e.ame, "se": e.se, "ci": list(e.ci), "p": e.p_value,
                             "n": e.n} for e in self.effects]}


def _design(result: Any, data: pd.DataFrame) -> Any:
    import numpy as np

    # the design matrix of new data through the fit's own formula (statsmodels >= 0.15 builds formulas with
    # formulaic; this is the transform its predict() uses)
    return np.asarray(result._transform_predict_exog(data, transform=True)[0], dtype=float)


def average_marginal_effect(result: Any, data: pd.DataFrame, var: str, by: str | None = None, *,
                            continuous: bool = False, difference: bool = False) -> list[Effect]:
    """AME of binary `var`, or with `continuous` the derivative-based AME of a numeric `var` per unit (overall, or
    per level of `by`, plus the difference of two levels with `difference`), with delta-method standard errors."""
    import numpy as np

    beta = np.asarray(result.params, dtype=float)
    cov = np.asarray(result.cov_params(), dtype=float)
    levels = [None] if by is None else sorted(data[by].astype(str).unique())
    out = []
    grads = []
    for level in levels:
        sub = data if level is None else data[data[by].astype(str) == level]
        if sub.empty:
            continue
        if continuous:
            x = sub[var].astype(float)
            h = 1e-5 * max(1.0, float(np.abs(x).max()))
            x0 = _design(result, sub)
            dx = (_design(result, sub.assign(**{var: x + h})) - _design(result, sub.assign(**{var: x - h}))) / (2 * h)
            p = 1 / (1 + np.exp(-(x0 @ beta)))
            deta = dx @ beta
            w = p * (1 - p)
            ame = float(np.mean(w * deta))
            grad = np.mean((w * (1 - 2 * p) * deta)[:, None] * x0 + w[:, None] * dx, axis=0)
        else:
            x1, x0 = (_design(result, sub.assign(**{var: value})) for value in (1, 0))
            p1 = 1 / (1 + np.exp(-(x1 @ beta)))
            p0 = 1 / (1 + np.exp(-(x0 @ beta)))
            ame = float(np.mean(p1 - p0))
            grad = np.mean((p1 * (1 - p1))[:, None] * x1 - (p0 * (1 - p0))[:, None] * x0, axis=0)
        se = float(np.sqrt(max(0.0, grad @ cov @ grad)))
        out.append(Effect("all" if level is None else level, ame, se, len(sub)))
        grads.append(grad)
    if difference and len(out) == 2:
        g = grads[1] - grads[0]
        out.append(Effect(f"{out[1].level} - {out[0].level}", out[1].ame - out[0].ame,
                          float(np.sqrt(max(0.0, g @ cov @ g))), out[0].n + out[1].n))
    return out


def fit_effect(data: pd.DataFrame, formula: str, name: str, by: str | None = None,
               var: str = "is_target", *, continuous: bool = False, difference: bool = False,
               cluster: str | None = None) -> RegressionResult:
    """Fit a logit and report the AME of `var` (per level of `by`; see `average_marginal_effect` for `continuous`
    and `difference`), with standard errors clustered on column `cluster` if given; failures are reported, not
    raised."""
    import warnings

    import statsmodels.formula.api as smf

    res = RegressionResult(name, formula, len(data))
    if data.empty or data["is_incorrect"].nunique() < 2:
        res.error = "the outcome does not vary (all correct or all wrong)"
        return res
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if cluster is None:
                fit = smf.logit(formula, data=data).fit(disp=0, maxiter=200)
            else:
                groups = data[cluster].astype("category").cat.codes.to_numpy()
                fit = smf.logit(formula, data=data).fit(disp=0, maxiter=200, cov_type="cluster",
                                                        cov_kwds={"groups": groups})
        if not getattr(fit, "mle_retvals", {}).get("converged", True):
            res.error = "the fit did not converge (separation?)"
        res.effects = average_marginal_effect(fit, data, var, by, continuous=continuous, difference=difference)
        if var in fit.params.index:
            res.odds_ratio = float(math.exp(fit.params[var]))
    except Exception as exc:  # statsmodels raises several types for singular/separated designs
        res.error = f"{type(exc).__name__}: {exc}"
    return res


def _task_term(data: pd.DataFrame) -> str:
    return " + C(task)" if data["task"].nunique() > 1 else ""


def paper_models(data: pd.DataFrame) -> list[RegressionResult]:
    """Models 1-4 of the module doc on stacked rows of two runs (columns is_incorrect, is_target, task, template,
    condition, group, has_belief), refusals already dropped."""
    if data.empty:
        return []
    data = data.copy()
    data["has_belief"] = data["has_belief"].astype(int)
    data["is_target"] = data["is_target"].astype(int)
    out = []
    m1 = data[data["template"].isin(["original", "original_neutral"]) & (data["condition"] == "unmodified")]
    out.append(fit_effect(m1, "is_incorrect ~ is_target" + _task_term(m1), "model 1: no context, no belief"))
    orig = data[data["template"] == "original"]
    if orig["group"].nunique() > 1:
        out.append(fit_effect(orig, "is_incorrect ~ is_target * C(group)" + _task_term(orig),
                              "model 2: by context group", by="group"))
    if orig["condition"].nunique() > 1:
        out.append(fit_effect(orig, "is_incorrect ~ is_target * C(condition)" + _task_term(orig),
                              "model 3: by context", by="condition"))
    if data["has_belief"].nunique() > 1:
        cond = " + C(condition)" if data["condition"].nunique() > 1 else ""
        m4 = fit_effect(data, "is_incorrect ~ is_target * has_belief" + _task_term(data) + cond,
                        "model 4: belief interaction", by="has_belief")
        for e in m4.effects:
            e.level = {"0": "no belief", "1": "belief"}.get(e.level, e.level)
        out.append(m4)
    return out


# -- power of the paired design -------------------------------------------------------------------------------------
def _mcnemar_z(alpha: float, power: float) -> tuple[float, float]:
    from scipy import stats

    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie strictly between 0 and 1, got {alpha} and {power}")
    return float(stats.norm.isf(alpha / 2)), float(stats.norm.ppf(power))


def mcnemar_mde(n: int, discordance: float, *, alpha: float = 0.05, power: float = 0.80) -> float:
    """Minimum detectable effect of a paired comparison: the smallest difference of the two error rates,
    delta = p_b - p_c (a proportion), that McNemar's test (two-sided, level `alpha`) finds with probability `power`
    on `n` pairs whose discordance rate (share of pairs where the two sides differ) is psi = p_b + p_c.

    Formula: the standard normal approximation of McNemar's power (Connor 1987, Biometrics 43:207; Miettinen
    1968), with the continuity correction of the chi-square test `mcnemar` runs: under the alternative b - c has
    mean n delta and variance n (psi - delta^2), and the test rejects when |b - c| - 1 > z_{1-alpha/2} sqrt(n psi),
    so the power is Phi((n delta - 1 - z_{1-alpha/2} sqrt(n psi)) / sqrt(n (psi - delta^2))); the MDE solves
    n delta - 1 = z_{1-alpha/2} sqrt(n psi) + z_power sqrt(n (psi - delta^2)) (bisection; the left side rises and
    the right side falls in delta). Without the "- 1" this is Connor's n = (z_{1-alpha/2} sqrt(psi) +
    z_power sqrt(psi - delta^2))^2 / delta^2. NaN when no delta <= psi reaches the power (too few pairs) or
    psi = 0. An approximation: below 25 discordant pairs `mcnemar` runs the exact test, and pairs are assumed
    independent (prompts of one item are not, so with several prompts per item the true MDE is larger).
    """
    za, zb = _mcnemar_z(alpha, power)
    if n <= 0 or not 0 < discordance <= 1:
        return math.nan

    def gap(d: float) -> float:
        return n * d - 1 - za * math.sqrt(n * discordance) - zb * math.sqrt(max(0.0, n * (discordance - d * d)))

    if gap(discordance) < 0:
        return math.nan
    lo, hi = 0.0, discordance
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return hi


def mcnemar_n(effect: float, discordance: float, *, alpha: float = 0.05, power: float = 0.80) -> int:
    """Pairs needed to detect `effect` (|p_b - p_c|, a proportion) at discordance `discordance` with `power`: the
    inverse of `mcnemar_mde`, in closed form: with K = z_{1-alpha/2} sqrt(psi) + z_power sqrt(psi - delta^2),
    sqrt(n) = (K + sqrt(K^2 + 4 delta)) / (2 delta), rounded up."""
    za, zb = _mcnemar_z(alpha, power)
    d = abs(effect)
    if d <= 0 or d > discordance or discordance > 1:
        raise ValueError(f"an effect of {d:.4f} needs a discordance rate of at least that size (and at most 1), "
                         f"got {discordance:.4f}")
    k = za * math.sqrt(discordance) + zb * math.sqrt(max(0.0, discordance - d * d))
    return math.ceil(((k + math.sqrt(k * k + 4 * d)) / (2 * d)) ** 2 - 1e-9)


def independent_discordance(error_a: float, effect: float = 0.0) -> float:
    """The discordance rate of two sides that err independently with rates error_a and error_a + effect:
    p_a (1 - p_b) + p_b (1 - p_a). Paired outcomes of one prompt are positively correlated in practice, which
    lowers the discordance, so as an assumption this is conservative (it overstates the MDE and the n needed)."""
    pa = min(1.0, max(0.0, error_a))
    pb = min(1.0, max(0.0, error_a + effect))
    return pa * (1 - pb) + pb * (1 - pa)
