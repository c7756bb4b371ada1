"""No tracked file names a directory of the machine it was made on: reports record paths relative
to the repository or the data directory, docs and tests use relative paths or variables."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Absolute paths under the usual roots of a user's or a CI machine's files; the pattern is built
# from parts so this file does not match itself.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:" + "|".join(["work", "root", "home", "tmp", "Users"]) + r")/")


def test_machine_path_pattern():
    assert MACHINE_PATH.search('"run": "/' + 'work/main/runs/sst2"')
    assert MACHINE_PATH.search("see /" + "tmp/tfds")
    assert not MACHINE_PATH.search("runs/sst2-minilm/bench/exports and ../shared/data/glue")
    assert not MACHINE_PATH.search("https://example.org/home/page")


def test_no_tracked_file_names_a_machine_path():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = os.path.join(ROOT, name)
        if not os.path.isfile(path) or os.path.getsize(path) > 5_000_000:
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data:  # binary (png, npz)
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if MACHINE_PATH.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "machine paths in tracked files:\n" + "\n".join(found)
