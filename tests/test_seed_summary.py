"""mean +- std over seeds, by hand."""

import math

import pytest

from training.seed_summary import SeedSummaryError, format_seed_summary, mean_std, summarize_seeds


def _summary(seed, base, power, flop, **settings):
    return {"task": "sst2", "metric": "accuracy", "baseline": {"primary": base}, "power_bert": {"primary": power},
            "flop_ratio": flop, "retention": [4, 2, 1], "settings": {"seed": seed, "lambda_": 1e-3, **settings},
            "checkpoints_chosen_on": "held out", "command": f"seed {seed}"}


def test_mean_std_by_hand():
    # 1, 2, 3: mean 2, sample variance (1 + 0 + 1) / 2 = 1.
    assert mean_std([1, 2, 3]) == (2.0, 1.0)
    assert mean_std([0.9, 0.9]) == pytest.approx((0.9, 0.0))
    with pytest.raises(SeedSummaryError, match="at least two"):
        mean_std([0.9])


def test_three_seeds():
    result = summarize_seeds([_summary(0, 0.90, 0.89, 3.0), _summary(1, 0.91, 0.89, 3.2),
                              _summary(2, 0.89, 0.88, 3.1)])
    assert result["baseline"] == pytest.approx((0.90, 0.01))
    # Differences -1, -2, -1 points: mean -4/3, sample std sqrt(((1/3)^2 * 2 + (2/3)^2) / 2).
    assert result["delta_points"][0] == pytest.approx(-4 / 3)
    assert result["delta_points"][1] == pytest.approx(math.sqrt((2 / 9 + 4 / 9) / 2))
    assert result["flop_ratio"] == pytest.approx((3.1, 0.1))
    assert "| sst2 | 3 (0, 1, 2) | 90.00 +- 1.00 | 88.67 +- 0.58 | -1.33 +- 0.58 | 3.10x +- 0.10 |" in \
        format_seed_summary(result)


def test_runs_must_differ_only_in_the_seed():
    with pytest.raises(SeedSummaryError, match="differ in more than the seed: lambda_"):
        summarize_seeds([_summary(0, 0.9, 0.9, 3.0), _summary(1, 0.9, 0.9, 3.0, lambda_=2e-3)])
    # Another machine count trains on the same batches; a run from before a setting used its default.
    summarize_seeds([_summary(0, 0.9, 0.9, 3.0), _summary(1, 0.9, 0.9, 3.0, strategy="multi-worker",
                                                          mixed_precision=None)])
    with pytest.raises(SeedSummaryError, match="differ in more than the seed: mixed_precision"):
        summarize_seeds([_summary(0, 0.9, 0.9, 3.0), _summary(1, 0.9, 0.9, 3.0, mixed_precision="bfloat16")])
    unfinished = _summary(1, 0.9, 0.9, 3.0)
    unfinished["power_bert"] = None
    with pytest.raises(SeedSummaryError, match="has not finished"):
        summarize_seeds([_summary(0, 0.9, 0.9, 3.0), unfinished])
