"""Warm-up + linear decay schedule against hand-computed values."""

import pytest

from training.schedules import WarmupLinearDecay


# 100 steps, 10 of warm-up: (step + 1) / 10 while that is the smaller, then (100 - step) / 90.
@pytest.mark.parametrize("step, expected", [
    (0, 1 / 10),      # the first update already has a non-zero rate
    (4, 5 / 10),
    (9, 10 / 10),     # last warm-up step reaches the peak (decay side: 91/90 > 1)
    (10, 90 / 90),    # first decay step: still the peak (warm-up side would be 11/10)
    (11, 89 / 90),
    (55, 45 / 90),
    (99, 1 / 90),     # last step of training: small but not zero
    (100, 0.0),
    (120, 0.0),       # past the end: clamped at 0, never negative
])
def test_values_by_hand(step, expected):
    schedule = WarmupLinearDecay(peak=1.0, total_steps=100, warmup_fraction=0.1)
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-6)


# No warm-up (the search tests use this): the warm-up length is floored at one step, so the
# decay runs over 8 - 1 = 7 steps: peak * min(step + 1, (8 - step) / 7), so steps 0 and 1 both
# run at the peak.
@pytest.mark.parametrize("step, expected", [(0, 2.0), (1, 2.0 * 7 / 7), (4, 2.0 * 4 / 7), (7, 2.0 / 7), (8, 0.0)])
def test_no_warmup_values_by_hand(step, expected):
    schedule = WarmupLinearDecay(peak=2.0, total_steps=8, warmup_fraction=0.0)
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-6)


def test_config_round_trip():
    schedule = WarmupLinearDecay(3e-5, 1000, 0.1)
    assert WarmupLinearDecay(**schedule.get_config()).get_config() == schedule.get_config()
