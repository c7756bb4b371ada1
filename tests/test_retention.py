"""`RetentionConfig` rules, the documented derivation from masses, and the mass penalty."""

import json
import math

import pytest

from powerbert_tf.elimination.retention import RetentionConfig, RetentionError, mass_penalty


def test_valid_config_and_flop_ratio():
    config = RetentionConfig((64, 40, 40, 10), 64)
    assert config.num_layers == 4
    assert config.flop_ratio == pytest.approx(4 * 64 / (64 + 40 + 40 + 10))


@pytest.mark.parametrize("lengths, message", [
    ((10, 12, 5), "must not increase"),
    ((10, 0, 0), "between 1 and"),
    ((70, 10, 5), "between 1 and"),
    ((10, 5.5, 5), "whole number"),
    (("a", 5, 5), "whole number"),
    ((), "at least one layer"),
])
def test_rule_violations_name_the_problem(lengths, message):
    with pytest.raises(RetentionError, match=message):
        RetentionConfig(lengths, 64)


def test_layer_count_must_match_encoder():
    with pytest.raises(RetentionError, match="3 entries .* 6 layers"):
        RetentionConfig((5, 4, 3), 8).check_num_layers(6)


def test_from_masses_follows_documented_rule():
    # ceil(20.3)=21; 19.0000001 is float noise on 19 -> 19; ceil(25.2)=26 -> capped at N=24 and at
    # the previous 19; ceil(0.2)=1; a mass of 0 still keeps one word vector.
    config = RetentionConfig.from_masses([20.3, 19.0000001, 25.2, 0.2, 0.0], 24)
    assert config.lengths == (21, 19, 19, 1, 1)
    assert RetentionConfig.from_masses([20.7, 3.2], 24, rounding="floor").lengths == (20, 3)
    assert RetentionConfig.from_masses([20.5, 3.49], 24, rounding="round").lengths == (21, 3)
    with pytest.raises(RetentionError, match="unknown rounding"):
        RetentionConfig.from_masses([1.0], 4, rounding="up")


def test_json_round_trip():
    config = RetentionConfig((8, 6, 2), 8)
    assert RetentionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(RetentionError, match="needs 'lengths'"):
        RetentionConfig.from_dict({"lengths": [3]})


def test_mass_penalty_by_hand():
    # lambda * (1*2.0 + 2*1.5 + 3*0.5) = 0.1 * 6.5
    assert math.isclose(mass_penalty([2.0, 1.5, 0.5], 0.1), 0.65)


def test_scaled_lengths_by_hand():
    config = RetentionConfig((64, 40, 21, 7, 1), 64)
    # ceil(l_j * T / 64) for T = 64, 32, 10, 1.
    assert config.scaled_lengths(64) == [64, 40, 21, 7, 1]
    assert config.scaled_lengths(32) == [32, 20, 11, 4, 1]
    assert config.scaled_lengths(10) == [10, 7, 4, 2, 1]
    assert config.scaled_lengths(1) == [1, 1, 1, 1, 1]
