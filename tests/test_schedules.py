"""Warm-up + linear decay schedule against hand-computed values."""

import pytest

from training.schedules import WarmupLinearDecay


@pytest.mark.parametrize("step, expected", [(0, 0.1), (4, 0.5), (9, 1.0), (10, 0.9), (55, 0.4), (100, 0.0), (120, 0.0)])
def test_values_by_hand(step, expected):
    # 100 steps, 10 of warm-up: (step + 1) / 10 up to step 9, then (100 - step) / 90.
    schedule = WarmupLinearDecay(peak=1.0, total_steps=100, warmup_fraction=0.1)
    expected = {10: 90 / 90, 55: 45 / 90}.get(step, expected)
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-6)


def test_config_round_trip():
    schedule = WarmupLinearDecay(3e-5, 1000, 0.1)
    assert WarmupLinearDecay(**schedule.get_config()).get_config() == schedule.get_config()
