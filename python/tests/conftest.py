"""Shared by the Python tests: where the trainrr binary and the examples are, and the CLI's view of a trace.
ctest sets TRAINRR_BIN, TRAINRR_SOURCE_DIR and PYTHONPATH (python/CMakeLists.txt)."""

import json
import os
import subprocess

import numpy as np
import pytest

SOURCE_DIR = os.environ.get("TRAINRR_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("TRAINRR_BIN", os.path.join(SOURCE_DIR, "build", "trainrr"))
EXAMPLES = os.path.join(SOURCE_DIR, "examples")


def cli(*args, check=True, cwd=None):
    """Runs the trainrr command; returns the completed process (stdout and stderr as text)."""
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"trainrr {' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def dump(trace):
    """The trace as `trainrr dump --json` prints it: one object per header, step, event, epoch, checkpoint
    and footer, in file order."""
    return [json.loads(line) for line in cli("dump", "--json", trace).stdout.splitlines()]


def without_places(messages):
    """The messages without what says where files were and where messages sit in the file: the
    configuration's path, the data files' paths and byte offsets (which follow from the path lengths)."""
    out = []
    for m in messages:
        m = dict(m)
        m.pop("offset", None)
        if m["type"] == "header":
            m.pop("config_path")
            m["datasets"] = [{k: v for k, v in d.items() if k != "path"} for d in m["datasets"]]
        if m["type"] == "footer":
            m["checkpoints"] = [c["step"] for c in m["checkpoints"]]
        out.append(m)
    return out


def breast_cancer():
    """The breast-cancer example's data in Python, as its configuration describes it: the 0.2 test split
    that scikit-learn's train_test_split(random_state=42) picks (the CLI's test rows, read back from its
    trace), standardized on the training rows."""
    path = os.path.join(EXAMPLES, "data", "breast_cancer.csv")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return table[:, :-1], table[:, -1]


@pytest.fixture
def bin_path():
    if not os.path.exists(BIN):
        pytest.skip(f"{BIN} is not built")
    return BIN
