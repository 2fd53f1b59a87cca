#!/usr/bin/env python3
"""Checks that TensorBoard itself reads the run-metrics event files as intended.

    tfevents_tensorboard_test.py RUN_METRICS_TEST_BINARY

Loads the run written by the binary's TfeventsFixture test (four steps, then a resume from step
3 that redoes steps 4 and 5) with TensorBoard's EventAccumulator, which applies the resumed
file's SessionLog START the way the TensorBoard UI does, and checks the scalars it keeps. Exits
77 (skipped) when no python3 here can import tensorboard: Debian 12 does not package it.
"""

import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

SKIP = 77


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def find_tensorboard_python():
    """This interpreter if it has tensorboard, else another python3 on the machine that has."""
    try:
        import tensorboard  # noqa: F401
        return sys.executable
    except ImportError:
        pass
    tried = [sys.executable]
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if not candidate or os.path.realpath(candidate) in map(os.path.realpath, tried):
            continue
        tried.append(candidate)
        if subprocess.run([candidate, "-c", "import tensorboard"],
                          capture_output=True).returncode == 0:
            return candidate
    print("SKIP: no python3 here can import tensorboard (tried "
          f"{', '.join(tried)}); Debian 12 has no python3-tensorboard package. With "
          "'pip install tensorboard' for one of them this test runs.")
    sys.exit(SKIP)


def check(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(os.path.join(run_dir, "tb"))  # purge_orphaned_data=True
    accumulator.Reload()
    failures = []
    tags = sorted(accumulator.Tags()["scalars"])
    expected_tags = sorted(["train/loss", "train/lr", "load/bucket0_max_over_mean", "eval/loss",
                            "train/grad_norm"])
    if tags != expected_tags:
        failures.append(f"scalar tags {tags}, expected {expected_tags}")
    # The resumed file's START at step 4 removes the first run's steps 4 and later.
    expected = {
        "train/loss": [(1, 2.5), (2, 0.0), (3, math.nan), (4, 1.75), (5, 1.5)],
        "train/lr": [(1, f32(0.1))],
        "load/bucket0_max_over_mean": [(2, 1.25)],
        "eval/loss": [(3, 3.0), (4, 2.0)],
        "train/grad_norm": [],
    }
    for tag, points in expected.items():
        got = [(e.step, e.value) for e in accumulator.Scalars(tag)] if tag in tags else None
        same = got is not None and len(got) == len(points) and all(
            gs == es and (math.isnan(gv) if math.isnan(ev) else gv == ev)
            for (gs, gv), (es, ev) in zip(got, points))
        if not same:
            failures.append(f"{tag}: got {got}, expected {points}")
    return 1 + len(expected), failures


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        checks, failures = check(sys.argv[2])
        for failure in failures:
            print(f"FAIL: {failure}")
        print(f"{checks - len(failures)} passed, {len(failures)} failed")
        return 1 if failures else 0
    if len(sys.argv) != 2:
        sys.exit("usage: tfevents_tensorboard_test.py RUN_METRICS_TEST_BINARY")
    python = find_tensorboard_python()
    tmp = tempfile.mkdtemp(prefix="tfevents_tensorboard_test.")
    run_dir = os.path.join(tmp, "run")
    env = dict(os.environ, MOWE_METRICS_FIXTURE_DIR=run_dir)
    result = subprocess.run([sys.argv[1], "--gtest_filter=TfeventsFixture.WritesKnownRun"],
                            env=env, capture_output=True, text=True)
    if result.returncode != 0 or "[  PASSED  ] 1 test" not in result.stdout:
        sys.exit(f"the fixture writer failed (exit {result.returncode}):\n"
                 f"{result.stdout}{result.stderr}")
    status = subprocess.run([python, os.path.abspath(__file__), "--check", run_dir]).returncode
    if status == 0:
        shutil.rmtree(tmp)
    else:
        print(f"files kept in {tmp}")
    return status


if __name__ == "__main__":
    sys.exit(main())
