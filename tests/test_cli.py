"""`powerbert train`: help text and the clear errors for bad input, all before any training."""

import os

import pytest

from powerbert_cli.main import _OVERRIDES, main

HEADER = "sentence\tlabel\n"


def glue_dir(tmp_path, train_rows, dev_rows=("a fine film .\t1",)):
    directory = tmp_path / "data" / "glue" / "SST-2"
    directory.mkdir(parents=True)
    (directory / "train.tsv").write_text(HEADER + "".join(r + "\n" for r in train_rows))
    (directory / "dev.tsv").write_text(HEADER + "".join(r + "\n" for r in dev_rows))
    return str(tmp_path / "data")


def train(tmp_path, *extra):
    task = [] if "--task" in extra else ["--task", "sst2"]
    return main(["train", *task, "--out", str(tmp_path / "run"), *extra])


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in [f for f, *_ in _OVERRIDES] + ["--task", "--init", "--out", "--data-dir", "--preset",
                                             "--step", "--retention", "--strategy", "--mixed-precision"]:
        assert flag in text


@pytest.mark.parametrize("rows, extra, message", [
    (["good\t1"], ["--task", "nope"], "unknown task 'nope'"),
    (["good\t1", "no tab here"], [], "train.tsv:3: expected 2 fields"),
    (["good\t1", "bad\t7"], [], "train.tsv:3: label '7'"),
    (["good\t1"], ["--retention", "10,20,5,4,3,2"], "must not increase"),
    (["good\t1"], ["--retention", "10,5"], "6 layers"),
    (["good\t1"], ["--retention", "ten"], "comma-separated integers"),
    (["good\t1"], ["--preset", "fast"], None),  # argparse refuses unknown choices itself
])
def test_bad_input_stops_before_training_with_a_clear_message(tmp_path, capsys, rows, extra, message):
    data = glue_dir(tmp_path, rows)
    if message is None:
        with pytest.raises(SystemExit) as exit_info:
            train(tmp_path, "--data-dir", data, *extra)
        assert exit_info.value.code == 2
        return
    assert train(tmp_path, "--data-dir", data, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("powerbert: error:") and message in err
    assert not os.path.exists(tmp_path / "run" / "finetune")


def test_missing_data_directory_is_named(tmp_path, capsys):
    assert train(tmp_path, "--data-dir", str(tmp_path / "nowhere")) == 2
    assert "nowhere" in capsys.readouterr().err


def _cli(*args):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "powerbert_cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    import subprocess
    import sys

    # What a bare TensorFlow start prints on this machine (on a CPU machine: oneDNN and CUDA
    # probing lines such as "failed call to cuInit"); the CLI must print none of it by default.
    bare = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    native = [line for line in bare.stderr.splitlines() if line.strip()]
    missing = ["export", str(tmp_path / "no-such-run"), "--base", str(tmp_path / "models")]
    quiet = _cli(*missing)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        f"powerbert: error: {tmp_path / 'no-such-run'} is neither a run directory nor a .keras file"]
    if native:
        loud = _cli("--verbose", *missing)
        assert loud.returncode == 2
        # Lines carry a timestamp and a thread id: compare what follows "file:line] ".
        assert native[-1].split("] ", 1)[-1] in loud.stderr


def test_native_log_lines_are_told_from_other_output():
    from powerbert_cli.quiet_tensorflow import is_native_log_line

    for line in [b"E0000 00:00:1796059462.782491   12993 util.cc:131] oneDNN supports DT_INT64 only on ...\n",
                 b"I0000 00:00:1796058268.950344    2613 port.cc:153] oneDNN custom operations are on.\n",
                 b"W0000 00:00:1796058268.951627    2613 cudart_stub.cc:31] Could not find cuda drivers\n",
                 b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
                 b"To enable the following instructions: AVX2 AVX512F, in other operations, rebuild\n"]:
        assert is_native_log_line(line), line
    for line in [b"Traceback (most recent call last):\n", b"Segmentation fault\n",
                 b"powerbert: error: runs/x is not a run directory\n", b"E: something else\n"]:
        assert not is_native_log_line(line), line
