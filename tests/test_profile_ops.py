"""`python -m benchmarks.profile_ops`: per-op-type time of an export's serving_default."""

import pytest

from benchmarks import profile_ops
from tests.serving_fixtures import TINY_N, export_tiny


def test_profile_counts_ops_and_times_matrix_work(tmp_path):
    _, _, version = export_tiny(tmp_path / "tiny")
    with pytest.raises(ValueError, match=f"takes inputs of length {TINY_N} only"):
        profile_ops.profile(version, length=10, batch=2, runs=2)
    result = profile_ops.profile(version, length=TINY_N, batch=2, runs=2)
    assert result["ops"] > 50 and result["call_ms"] > 0
    assert any(op in profile_ops.MATRIX_OPS for op in result["by_type"]), result["by_type"]
    text = profile_ops.markdown({"tiny": result}, 10, 2, "test")
    assert "| tiny |" in text


def test_cli_writes_the_table(tmp_path, capsys):
    _, _, version = export_tiny(tmp_path / "tiny")
    out = tmp_path / "profile.md"
    assert profile_ops.main([f"tiny={version}", "--length", str(TINY_N), "--runs", "1", "--out", str(out)]) == 0
    assert "| tiny |" in out.read_text() and "| tiny |" in capsys.readouterr().out
