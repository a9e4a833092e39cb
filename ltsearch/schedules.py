"""Mixing and weighting schedules as functions of training progress p = epoch / total_epochs ∈ [0, 1].

``build_schedule(name, **params)`` returns ``f(p) -> float``:

====================== ====================================== ===========================
name                   value                                  used by
====================== ====================================== ===========================
``parabolic_decay``    1 − p²                                 BBN's default adaptor α
``cosine``             cos(p·π/2)                             BBN Table 4, HRDC Table 6
``linear_decay``       1 − p                                  BBN Table 4
``equal``              0.5 (or ``value``)                     BBN Table 4, HRDC Table 6
``parabolic_increment`` p²                                    BBN Table 4
``beta``               a draw from Beta(a, b) per call        BBN Table 4 (a = b = 0.2)
``d2c``                p^γ                                    SDNHL's λ (γ = 0 → 1 always)
``hrdc``               (p − 1)²                               HRDC's α = ((T − T_max)/T_max)²
``segmented``          ``high`` before ``switch``, else ``low`` HRDC Table 6 (two-phase)
``gra``                s·(c^p − 1) (convex; linear, concave)  GLAG's adjustment strength
``constant``           ``value``                              anything fixed
====================== ====================================== ===========================
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Callable, Literal

import numpy as np
from pydantic import Field

from ltsearch.params import NonNegative, Positive, Unit, validate_kwargs
from ltsearch.registry import SCHEDULES

Schedule = Callable[[float], float]


def _p(p: float) -> float:
    return min(max(float(p), 0.0), 1.0)


@SCHEDULES.register("parabolic_decay")
def parabolic_decay() -> Schedule:
    return lambda p: 1.0 - _p(p) ** 2


@SCHEDULES.register("cosine")
def cosine() -> Schedule:
    return lambda p: math.cos(_p(p) * math.pi / 2)


@SCHEDULES.register("linear_decay")
def linear_decay() -> Schedule:
    return lambda p: 1.0 - _p(p)


@SCHEDULES.register("equal")
def equal(value: float = 0.5) -> Schedule:
    return lambda p: float(value)


@SCHEDULES.register("constant")
def constant(value: float = 1.0) -> Schedule:
    return lambda p: float(value)


@SCHEDULES.register("parabolic_increment")
def parabolic_increment() -> Schedule:
    return lambda p: _p(p) ** 2


@SCHEDULES.register("beta")
def beta(a: Positive = 0.2, b: Positive = 0.2, seed: int | None = None) -> Schedule:
    rng = np.random.default_rng(seed)
    return lambda p: float(rng.beta(a, b))


@SCHEDULES.register("d2c")
def d2c(gamma: NonNegative = 1.0) -> Schedule:
    return lambda p: _p(p) ** gamma if gamma > 0 else 1.0


@SCHEDULES.register("hrdc")
def hrdc() -> Schedule:
    return lambda p: (_p(p) - 1.0) ** 2


@SCHEDULES.register("segmented")
def segmented(switch: Unit = 0.5, high: float = 1.0, low: float = 0.0) -> Schedule:
    return lambda p: float(high) if _p(p) < switch else float(low)


@SCHEDULES.register("gra")
def gra(s: float = 1.0, c: Annotated[float, Field(gt=1)] = 2.0,
        form: Literal["convex", "linear", "concave"] = "convex") -> Schedule:
    """GLAG's GraLoss strength (Zhang & Xiang 2022, Eq. 3): α = s·(c^p − 1), p = T / T_max.

    The paper gives only Eq. 3 and names three forms (Table 5: linear, concave, convex with
    c = 2, 4, 6, 8; "with different c, α will be in concave, linear or convex forms"). All three
    start at 0 and end at the same value A = s·(c − 1):

    - ``convex``: s·(c^p − 1), Eq. 3 as written (c > 1); c = 2, s = 1 is the paper's default.
    - ``linear``: s·(c − 1)·p, the straight line between the same end points (Eq. 3's c → 1 limit
      once rescaled to the same end value).
    - ``concave``: s·c·(1 − c^{−p}) = A − convex(1 − p), the convex curve reflected through the
      midpoint of the line; it is Eq. 3 itself with c' = 1/c < 1 and s' = −s·c.
    """
    if form == "convex":
        return lambda p: s * (c ** _p(p) - 1.0)
    if form == "linear":
        return lambda p: s * (c - 1.0) * _p(p)
    if form == "concave":
        return lambda p: s * c * (1.0 - c ** (-_p(p)))
    raise ValueError(f"gra form must be convex, linear or concave, got {form!r}")


def build_schedule(name: str, where: str = "schedule", **params: Any) -> Schedule:
    """Schedule ``name`` with its parameters validated against its signature (one-line errors)."""
    fn = SCHEDULES.get(name, where=where)
    return fn(**validate_kwargs(fn, params, where))
