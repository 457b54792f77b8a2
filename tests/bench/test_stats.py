"""Statistics against hand-computed tables and scipy/statsmodels/scikit-learn, and planted effects recovered by
the regressions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from steerwarm.bench.stats import (
    average_marginal_effect,
    benjamini_hochberg,
    cohen_kappa,
    cohens_g,
    fit_effect,
    g_label,
    mcnemar,
    paired_counts,
    paper_models,
    wilson,
)


def test_wilson_hand_and_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = wilson(0, 10)  # hand: centre = (0 + z^2/20) / (1 + z^2/10), half = same -> (0, 2*centre)
    z2 = 1.959963984540054 ** 2
    assert lo == 0.0 and hi == pytest.approx(2 * (z2 / 20) / (1 + z2 / 10), abs=1e-12)
    assert wilson(0, 12)[0] == 0.0 and wilson(12, 12)[1] == 1.0  # exact at the ends (rounding left 2.8e-17)
    for k, n in [(0, 10), (3, 10), (50, 100), (99, 100), (7, 64)]:
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert wilson(k, n) == pytest.approx(ref, abs=1e-9)
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_mcnemar_hand_computed_and_statsmodels() -> None:
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    m = mcnemar(2, 10)  # exact: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert m.method == "exact" and m.p_value == pytest.approx(2 * 79 / 4096, rel=1e-12)
    m = mcnemar(20, 40)  # chi2 with continuity correction: (|20-40|-1)^2 / 60 = 361/60
    assert m.method == "chi2-cc" and m.statistic == pytest.approx(361 / 60)
    for b, c in [(0, 5), (3, 3), (7, 12), (20, 40), (60, 31)]:
        table = [[5, b], [c, 9]]
        ref = sm_mcnemar(table, exact=b + c < 25, correction=True)
        assert mcnemar(b, c).p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert mcnemar(0, 0).p_value == 1.0
    assert paired_counts([0, 0, 1, 1, 0], [1, 0, 0, 1, 1]) == (2, 1)


def test_cohens_g_and_odds_ratio() -> None:
    assert cohens_g(10, 2) == pytest.approx(10 / 12 - 0.5)
    assert cohens_g(5, 5) == 0.0 and math.isnan(cohens_g(0, 0))
    assert g_label(0.3) == "large" and g_label(0.2) == "medium" and g_label(0.06) == "small"
    assert mcnemar(6, 3).odds_ratio == 2.0 and mcnemar(4, 0).odds_ratio == math.inf


def test_benjamini_hochberg_hand_and_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.20]
    # hand: sorted 0.01, 0.03, 0.04, 0.20 -> x4/1, x4/2, x4/3, x4/4 = .04, .06, .0533, .20 -> step-up min: .04,
    # .0533, .0533, .20
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.20])
    rng = np.random.default_rng(0)
    q = list(rng.uniform(0, 0.2, 17))
    assert benjamini_hochberg(q) == pytest.approx(list(multipletests(q, method="fdr_bh")[1]))
    out = benjamini_hochberg([0.01, math.nan, 0.02])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_cohen_kappa_hand_and_sklearn() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = [1, 1, 0, 0, 1, 0, 1, 1]
    b = [1, 0, 0, 0, 1, 1, 1, 1]
    # hand: po = 6/8; pe = (5/8)(5/8) + (3/8)(3/8) = 34/64 -> kappa = (48/64 - 34/64) / (30/64) = 14/30
    assert cohen_kappa(a, b) == pytest.approx(14 / 30)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa([1, 1], [1, 1]) == 1.0


def _simulate(n: int, seed: int = 0) -> pd.DataFrame:
    """Paired prompts over 2 tasks, 3 conditions, belief or not; the target adds a planted log-odds effect that is
    larger with a belief (0.4 + 0.6 = 1.0) than without (0.4)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        task = "trivia" if i % 2 else "medqa"
        cond = ["unmodified", "emotion:sad", "stake:high"][i % 3]
        belief = (i // 3) % 2 == 1
        template = "incorrect" if belief else "original"
        base = -1.2 + (0.8 if task == "medqa" else 0.0) + (0.5 if belief else 0.0)
        for target in (0, 1):
            logit = base + target * (0.4 + (0.6 if belief else 0.0))
            y = int(rng.uniform() < 1 / (1 + math.exp(-logit)))
            rows.append({"task": task, "condition": cond, "group": cond.split(":")[0] if ":" in cond else "none",
                         "template": template, "has_belief": belief, "is_target": target, "is_incorrect": y,
                         "base": base, "effect": 0.4 + (0.6 if belief else 0.0)})
    return pd.DataFrame(rows)


def _true_ame(df: pd.DataFrame) -> float:
    x0 = df["base"].to_numpy()
    x1 = x0 + df["effect"].to_numpy()
    return float(np.mean(1 / (1 + np.exp(-x1)) - 1 / (1 + np.exp(-x0))))


def test_ame_equals_statsmodels_margeff_without_interactions() -> None:
    import statsmodels.formula.api as smf

    df = _simulate(1500)
    fit = smf.logit("is_incorrect ~ is_target + C(task)", data=df).fit(disp=0)
    mine = average_marginal_effect(fit, df, "is_target")[0]
    ref = fit.get_margeff(at="overall", method="dydx", dummy=True)
    i = list(ref.summary_frame().index).index("is_target")
    assert mine.ame == pytest.approx(float(ref.margeff[i]), rel=1e-6)
    assert mine.se == pytest.approx(float(ref.margeff_se[i]), rel=1e-3)


def test_planted_belief_interaction_is_recovered() -> None:
    df = _simulate(12000, seed=1)
    res = fit_effect(df, "is_incorrect ~ is_target * has_belief + C(task)", "m4", by="has_belief")
    assert res.error is None
    by = {e.level: e for e in res.effects}
    for level, sub in (("False", df[~df["has_belief"]]), ("True", df[df["has_belief"]])):
        truth = _true_ame(sub[sub["is_target"] == 0])
        assert abs(by[level].ame - truth) < 3 * by[level].se, (level, by[level].ame, truth)
    assert by["True"].ame > by["False"].ame + 0.05  # the planted interaction shows
    assert by["False"].ci[0] > 0  # and the plain effect is significant


def test_paper_models_run_and_report_failures() -> None:
    df = _simulate(3000, seed=2)
    models = paper_models(df)
    names = [m.name for m in models]
    assert names == ["model 1: no context, no belief", "model 2: by context group", "model 3: by context",
                     "model 4: belief interaction"]
    assert all(m.error is None and m.effects for m in models)
    assert {e.level for e in models[2].effects} == {"unmodified", "emotion:sad", "stake:high"}
    flat = df.assign(is_incorrect=0)
    assert "does not vary" in (fit_effect(flat, "is_incorrect ~ is_target", "x").error or "")


def _simulate_dial(n: int, seed: int = 3) -> pd.DataFrame:
    """A continuous dial: log-odds rise 0.5 per unit without a belief and 0.5 + 0.4 with one; items recur (clusters)."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], n)
    belief = rng.integers(0, 2, n)
    task = np.where(rng.uniform(size=n) < 0.5, "trivia", "medqa")
    logit = -1.0 + 0.6 * (task == "medqa") + 0.3 * belief + (0.5 + 0.4 * belief) * w
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"is_incorrect": y, "warmth": w, "has_belief": belief, "task": task,
                         "item": rng.integers(0, n // 10, n)})


def test_continuous_ame_equals_statsmodels_margeff() -> None:
    import statsmodels.formula.api as smf

    df = _simulate_dial(4000)
    formula = "is_incorrect ~ warmth + C(task) + has_belief"
    for kwargs in ({}, {"cov_type": "cluster", "cov_kwds": {"groups": df["item"].to_numpy()}}):
        fit = smf.logit(formula, data=df).fit(disp=0, **kwargs)
        mine = average_marginal_effect(fit, df, "warmth", continuous=True)[0]
        ref = fit.get_margeff(at="overall", method="dydx")
        i = list(ref.summary_frame().index).index("warmth")
        assert mine.ame == pytest.approx(float(ref.margeff[i]), rel=1e-6)
        assert mine.se == pytest.approx(float(ref.margeff_se[i]), rel=1e-3)
    res = fit_effect(df, formula, "dial", var="warmth", continuous=True, cluster="item")
    assert res.error is None and res.effects[0].ame > 0 and res.effects[0].ci[0] > 0
    assert res.effects[0].se == pytest.approx(float(ref.margeff_se[i]), rel=1e-3)  # ref: the clustered fit, last


def test_continuous_ame_by_level_and_difference_delta_method() -> None:
    import statsmodels.formula.api as smf

    df = _simulate_dial(6000, seed=4)
    fit = smf.logit("is_incorrect ~ warmth * has_belief + C(task)", data=df).fit(disp=0)
    effects = average_marginal_effect(fit, df, "warmth", by="has_belief", continuous=True, difference=True)
    assert [e.level for e in effects] == ["0", "1", "1 - 0"]
    names = list(fit.params.index)
    iw, ii = names.index("warmth"), names.index("warmth:has_belief")
    x = np.asarray(fit.model.exog)
    hb = df["has_belief"].to_numpy()

    def levels(beta: np.ndarray) -> tuple[float, float]:  # hand: mean p(1-p) * (b_w + b_wxb * has_belief)
        p = 1 / (1 + np.exp(-(x @ beta)))
        d = p * (1 - p) * (beta[iw] + beta[ii] * hb)
        return float(d[hb == 0].mean()), float(d[hb == 1].mean())

    beta = np.asarray(fit.params)
    a0, a1 = levels(beta)
    assert effects[0].ame == pytest.approx(a0, rel=1e-6) and effects[1].ame == pytest.approx(a1, rel=1e-6)
    assert effects[2].ame == pytest.approx(a1 - a0, rel=1e-6)
    def diff(b: np.ndarray) -> float:
        lo, hi = levels(b)
        return hi - lo

    grad = np.array([(diff(beta + h) - diff(beta - h)) / 2e-6 for h in np.eye(len(beta)) * 1e-6])
    se = float(np.sqrt(grad @ np.asarray(fit.cov_params()) @ grad))
    assert effects[2].se == pytest.approx(se, rel=1e-3)
    assert effects[2].ame > 0  # the planted extra slope with a belief
