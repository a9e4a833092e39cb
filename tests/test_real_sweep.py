"""The 1,000-trial benchmark's code at a toy size (slow: it starts Ray twice): the sweep completes with
every row ok, and every figure it publishes is measured (no wall-clock time is asserted)."""

import math

import pytest

from ltsearch.bench.real_sweep import ask_ms, measure_sweep_at_scale

pytestmark = pytest.mark.slow


def test_real_sweep_measures_every_figure_at_toy_size():
    out = measure_sweep_at_scale(trials=4, trial_seconds=0.1)
    assert out["trials"] == 4 and out["slots"] >= 1
    for key in ("sweep_s", "bare_s", "trial_alone_s", "trial_in_sweep_s", "sweep_ideal_s", "bare_ideal_s",
                "driver_peak_rss_mb", "driver_cpu_per_trial_ms"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert out["driver_peak_rss_mb"] >= out["driver_start_rss_mb"]
    assert out["overhead_ratio"] == pytest.approx(out["sweep_s"] / out["bare_s"])
    assert out["sweep_over_ideal"] == pytest.approx(out["sweep_s"] / out["sweep_ideal_s"])


def test_ask_time_is_measured_on_a_study_that_holds_trials():
    assert 0 < ask_ms(0, asks=3) and 0 < ask_ms(30, asks=3)
