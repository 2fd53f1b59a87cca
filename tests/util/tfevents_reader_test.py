#!/usr/bin/env python3
"""Checks the run-metrics files with a reader that shares no code with their writer.

    tfevents_reader_test.py RUN_METRICS_TEST_BINARY

Runs the binary's TfeventsFixture test, which writes a known run (four steps, then a resume from
step 3 that redoes steps 4 and 5), and checks with tests/util/read_tfevents.py: the CRC32C
implementation against published check values, every record's framing and both CRCs, the exact
steps, tags and float32 values of both event files, the file_version record, the SessionLog
START of the resumed file, metrics.jsonl as JSON (null for NaN, the abandoned steps gone), and
that a flipped byte anywhere in an event file, a cut or an extended file is reported.
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import read_tfevents as rt  # noqa: E402

READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "read_tfevents.py")
failures = []
passed = 0


def check(ok, message):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(message)
        print(f"FAIL: {message}", file=sys.stderr)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def same_scalars(got, expected):
    """Exact float32 equality, NaN matching NaN."""
    if len(got) != len(expected):
        return False
    for (gs, gt, gv), (es, et, ev) in zip(got, expected):
        if gs != es or gt != et:
            return False
        if math.isnan(ev) != math.isnan(gv) or (not math.isnan(ev) and gv != ev):
            return False
    return True


def write_fixture(binary, run_dir):
    env = dict(os.environ, MOWE_METRICS_FIXTURE_DIR=run_dir)
    result = subprocess.run([binary, "--gtest_filter=TfeventsFixture.WritesKnownRun"], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0 or "[  PASSED  ] 1 test" not in result.stdout:
        sys.exit(f"the fixture writer failed (exit {result.returncode}):\n"
                 f"{result.stdout}{result.stderr}")


def check_crc32c():
    # RFC 3720 (iSCSI) B.4 and the common "123456789" check value of CRC-32C.
    check(rt.crc32c(b"123456789") == 0xE3069283, "crc32c('123456789') is 0xe3069283")
    check(rt.crc32c(bytes(32)) == 0x8A9136AA, "crc32c(32 zero bytes) is 0x8a9136aa")
    check(rt.crc32c(b"\xff" * 32) == 0x62A8AB43, "crc32c(32 0xff bytes) is 0x62a8ab43")
    check(rt.crc32c(bytes(range(32))) == 0x46DD794E, "crc32c(0..31) is 0x46dd794e")
    check(rt.crc32c(b"") == 0, "crc32c of nothing is 0")


def check_event_files(run_dir):
    tb = os.path.join(run_dir, "tb")
    names = sorted(os.listdir(tb))
    check(len(names) == 2 and all(n.startswith("events.out.tfevents.") for n in names),
          f"tb/ holds the two runs' event files, not {names}")
    if len(names) != 2:
        return None
    first, resumed = (os.path.join(tb, n) for n in names)
    now = time.time()
    for path in (first, resumed):
        events = rt.read_events(path)
        check(events[0] == {"wall_time": events[0]["wall_time"], "step": 0,
                            "file_version": "brain.Event:2"},
              f"{path}: first record is file_version brain.Event:2 at step 0: {events[0]}")
        times = [e["wall_time"] for e in events]
        check(all(now - 3600 < t <= now + 1 for t in times), f"{path}: wall times are now: {times}")
        check(times == sorted(times), f"{path}: wall times do not go back: {times}")

    events = rt.read_events(first)
    check(len(events) == 5 and not any("session_log" in e for e in events),
          f"{first}: version and four steps, no session log: {events}")
    expected = [(1, "train/loss", 2.5), (1, "train/lr", f32(0.1)),
                (2, "train/loss", 0.0), (2, "load/bucket0_max_over_mean", 1.25),
                (3, "train/loss", math.nan), (3, "eval/loss", 3.0),
                (4, "train/loss", math.inf), (4, "train/grad_norm", -math.inf)]
    got = rt.scalars(events)
    check(same_scalars(got, expected), f"{first}: scalars\n  got      {got}\n  expected {expected}")

    events = rt.read_events(resumed)
    check(len(events) == 4, f"{resumed}: version, session log and two steps: {events}")
    check(len(events) > 1 and events[1].get("session_log", {}).get("status") == 1
          and events[1]["step"] == 4 and "summary" not in events[1],
          f"{resumed}: second record is a SessionLog START at step 4: {events[1:2]}")
    expected = [(4, "train/loss", 1.75), (4, "eval/loss", 2.0), (5, "train/loss", 1.5)]
    got = rt.scalars(events)
    check(same_scalars(got, expected), f"{resumed}: scalars\n  got      {got}\n  expected {expected}")

    result = subprocess.run([sys.executable, READER, resumed], capture_output=True, text=True)
    expected_out = ("version brain.Event:2\nsession_log START step 4\n"
                    "4 train/loss 1.75\n4 eval/loss 2.0\n5 train/loss 1.5\n")
    check(result.returncode == 0 and result.stdout == expected_out,
          f"read_tfevents.py {resumed}: exit {result.returncode}, printed\n{result.stdout}"
          f"{result.stderr}")
    return first


def check_jsonl(run_dir):
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = f.read().splitlines()
    records = [json.loads(line, parse_constant=no_constants) for line in lines]
    for r in records:
        check(isinstance(r.pop("time", None), float), f"record has a fractional time: {r}")
    expected = [{"step": 1, "train/loss": 2.5, "train/lr": 0.1},
                {"step": 2, "train/loss": 0, "load/bucket0_max_over_mean": 1.25},
                {"step": 3, "train/loss": None, "eval/loss": 3},
                {"step": 4, "train/loss": 1.75, "eval/loss": 2},
                {"step": 5, "train/loss": 1.5}]
    check(records == expected, f"metrics.jsonl\n  got      {records}\n  expected {expected}")
    check(all(list(json.loads(line))[:2] == ["step", "time"] for line in lines),
          "every record starts with step and time")


def damaged_copy(path, out, offset=None, cut=0, extra=b""):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if offset is not None:
        data[offset] ^= 0x5A
    data = data[:len(data) - cut] + extra
    with open(out, "wb") as f:
        f.write(data)


def check_damage(path, tmp):
    damaged = os.path.join(tmp, "damaged")
    size = os.path.getsize(path)
    # Every single-byte change is a burst of at most 8 bits, which CRC-32C always detects.
    missed = []
    for offset in range(size):
        damaged_copy(path, damaged, offset=offset)
        try:
            rt.read_records(damaged)
            missed.append(offset)
        except rt.FormatError:
            pass
    check(not missed, f"a flipped byte at every one of {size} offsets is detected; missed {missed}")

    first_length = struct.unpack_from("<Q", open(path, "rb").read(), 0)[0]
    second = 16 + first_length  # offset of the second record
    cases = [
        ("flipped length", dict(offset=second + 2),
         f"record 1 at byte {second}: length CRC mismatch"),
        ("flipped data", dict(offset=second + 14), f"record 1 at byte {second}: data CRC mismatch"),
        ("flipped data CRC", dict(offset=second + 12 + struct.unpack_from(
            "<Q", open(path, "rb").read(), second)[0]), "data CRC mismatch"),
        ("cut by one byte", dict(cut=1), "file ends inside the record"),
        ("three bytes appended", dict(extra=b"abc"),
         "file ends inside the record's 12-byte header (3 bytes left)"),
    ]
    for name, how, message in cases:
        damaged_copy(path, damaged, **how)
        result = subprocess.run([sys.executable, READER, damaged], capture_output=True, text=True)
        check(result.returncode == 1 and f"read_tfevents: {damaged}: " in result.stderr
              and message in result.stderr,
              f"{name}: exit 1 with '{message}', got exit {result.returncode}: {result.stderr}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tfevents_reader_test.py RUN_METRICS_TEST_BINARY")
    tmp = tempfile.mkdtemp(prefix="tfevents_reader_test.")
    run_dir = os.path.join(tmp, "run")
    check_crc32c()
    write_fixture(sys.argv[1], run_dir)
    first = check_event_files(run_dir)
    check_jsonl(run_dir)
    if first:
        check_damage(first, tmp)
    if failures:
        print(f"{passed} passed, {len(failures)} failed (files kept in {tmp})")
        return 1
    shutil.rmtree(tmp)
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
