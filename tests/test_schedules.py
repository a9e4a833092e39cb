"""Every mixing / weighting schedule at p = 0, 0.5, 1 against the papers' formulas, written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ltsearch.errors import UserError
from ltsearch.schedules import build_schedule

P = (0.0, 0.5, 1.0)

CASES = [
    # name, params, expected values at p = 0, 0.5, 1
    ("parabolic_decay", {}, (1.0, 0.75, 0.0)),  # BBN Eq. 5: 1 − (T/T_max)²
    ("cosine", {}, (1.0, math.sqrt(2) / 2, 0.0)),  # BBN Table 4: cos(T/T_max · π/2)
    ("linear_decay", {}, (1.0, 0.5, 0.0)),  # BBN Table 4: 1 − T/T_max
    ("equal", {}, (0.5, 0.5, 0.5)),  # BBN Table 4 / HRDC Table 6: 0.5
    ("parabolic_increment", {}, (0.0, 0.25, 1.0)),  # BBN Table 4: (T/T_max)²
    ("d2c", {"gamma": 1.0}, (0.0, 0.5, 1.0)),  # SDNHL: (E/E_total)^γ, linear
    ("d2c", {"gamma": 2.0}, (0.0, 0.25, 1.0)),  # convex
    ("d2c", {"gamma": 0.3}, (0.0, 0.5 ** 0.3, 1.0)),  # concave
    ("d2c", {"gamma": 0.0}, (1.0, 1.0, 1.0)),  # constant
    ("hrdc", {}, (1.0, 0.25, 0.0)),  # HRDC Eq. 6: ((T − T_max)/T_max)²
    ("segmented", {}, (1.0, 0.0, 0.0)),  # HRDC Table 6: 1 in the first half, then 0
    ("segmented", {"switch": 0.6, "high": 0.8, "low": 0.2}, (0.8, 0.8, 0.2)),
]


@pytest.mark.parametrize("name,params,expected", CASES)
def test_schedule_values(name, params, expected):
    f = build_schedule(name, **params)
    assert [f(p) for p in P] == pytest.approx(expected, abs=1e-12)


def test_progress_is_clamped():
    f = build_schedule("parabolic_decay")
    assert f(-0.1) == 1.0 and f(1.5) == 0.0


def test_beta_adaptor_draws_from_beta():
    f = build_schedule("beta", a=0.2, b=0.2, seed=3)
    draws = np.array([f(0.5) for _ in range(4000)])
    assert ((0 <= draws) & (draws <= 1)).all()
    assert draws.mean() == pytest.approx(0.5, abs=0.03)  # symmetric Beta(0.2, 0.2)
    # U-shaped: Var = ab / ((a+b)²(a+b+1)) = 0.04 / (0.16 · 1.4) ≈ 0.1786
    assert draws.var() == pytest.approx(0.04 / (0.16 * 1.4), abs=0.02)
    g = build_schedule("beta", a=0.2, b=0.2, seed=3)
    assert [g(p) for p in P] == [f2 for f2 in np.random.default_rng(3).beta(0.2, 0.2, size=3)]


def test_bad_schedule_names_and_params():
    with pytest.raises(UserError, match="parabolic_decay"):
        build_schedule("parabolic_decy")
    with pytest.raises(UserError, match="gamma"):
        build_schedule("d2c", gama=1.0)
