#!/usr/bin/python3
"""Checks a safetensors export of a tiny-config checkpoint with tests/util/read_safetensors.py, a
reader that shares no code with the writer:

  * the file obeys the format (dtypes, offsets, sizes, contiguity, 8-byte alignment);
  * its dense T5 tensors are exactly the Hugging Face T5 v1.1 names and shapes listed in
    tests/convert/hf_t5_v1_1_tiny_names.txt, and every other tensor is an expert, the routing
    table or optimizer state;
  * the values of several tensors equal, bit for bit, what `mowe_convert dump` reads from the
    checkpoint (transposed where the export transposes);
  * the routing table is consistent with its bucket layout, and the metadata carries the step
    and config.

  check_export.py MOWE_CONVERT CHECKPOINT_DIR EXPORT.safetensors NAMES.txt
"""

import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "util"))
import read_safetensors  # noqa: E402

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL: " + message)


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def dump(convert, ckpt, name):
    """(shape, values) of a checkpoint tensor as mowe_convert prints it."""
    out = subprocess.run([convert, "dump", ckpt, name], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    head = out[0].split(" ", 2)
    shape = [int(d) for d in head[2].strip("[]").split(",") if d.strip()]
    return shape, [float(v) for v in out[1:] if v]


def main(argv):
    convert, ckpt, export, names_file = argv[1:5]
    header = read_safetensors.read_header(export)
    tensors, metadata, data_start = header
    print("%s: %d tensors, data at byte %d" % (export, len(tensors), data_start))

    # Hugging Face names and shapes of the dense part.
    expected = {}
    with open(names_file) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, shape = line.split()
            expected[name] = [int(d) for d in shape.split(",")]
    dense = {n: t for n, t in tensors.items()
             if not n.startswith("optimizer/") and not n.startswith("mowe.")}
    for name, shape in expected.items():
        check(name in dense, "Hugging Face tensor %s is not in the export" % name)
        if name in dense:
            check(dense[name][1] == shape and dense[name][0] == "F32",
                  "%s is %s %s, Hugging Face has F32 %s" % (name, dense[name][0], dense[name][1],
                                                            shape))
    for name in dense:
        check(name in expected, "export tensor %s is not a Hugging Face T5 name" % name)
    others = set(tensors) - set(dense)
    check(all(n.startswith("optimizer/") or n.startswith("mowe.bucket") or
              n.startswith("mowe.routing.") for n in others),
          "unexpected non-T5 tensors: %s" % sorted(others))

    # Exact values against the checkpoint, with the transpositions the mapping promises.
    for ours, theirs, transposed in [
            ("shared.embedding", "shared.weight", False),
            ("decoder.lm_head", "lm_head.weight", True),
            ("encoder.block0.self_attention.q", "encoder.block.0.layer.0.SelfAttention.q.weight",
             True),
            ("decoder.block0.cross_attention.o", "decoder.block.0.layer.1.EncDecAttention.o.weight",
             True),
            ("decoder.block0.ffn.wi_1", "decoder.block.0.layer.2.DenseReluDense.wi_1.weight", True),
            ("encoder.relative_attention_bias",
             "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", False),
            ("encoder.block1.mowe.norm", "encoder.block.1.layer.1.layer_norm.weight", False),
            ("mowe.bucket1.wo", "mowe.bucket1.wo", False),
            ("mowe.bucket0.wi/v", "optimizer/mowe.bucket0.wi/v", False),
            ("decoder.lm_head/m", "optimizer/decoder.lm_head/m", False)]:
        shape, want = dump(convert, ckpt, ours)
        got = read_safetensors.values(export, theirs, header)
        check(len(got) == len(want), "%s: %d values, the checkpoint has %d" % (theirs, len(got),
                                                                              len(want)))
        if transposed:
            rows, cols = shape
            check(tensors[theirs][1] == [cols, rows],
                  "%s is %s, the transpose of %s" % (theirs, tensors[theirs][1], shape))
            want = [want[r * cols + c] for c in range(cols) for r in range(rows)]
        else:
            check(tensors[theirs][1] == shape, "%s is %s, %s is %s" % (theirs, tensors[theirs][1],
                                                                       ours, shape))
        mismatches = sum(1 for a, b in zip(got, want) if f32_bits(a) != f32_bits(b))
        check(mismatches == 0, "%s: %d of %d values differ from %s" % (theirs, mismatches,
                                                                       len(got), ours))
        print("  %-70s = %s%s (%d values)" % (theirs, ours, " transposed" if transposed else "",
                                            len(got)))

    # The routing table: ids to (bucket, expert), consistent with the layout.
    bucket_of = read_safetensors.values(export, "mowe.routing.bucket_of_id", header)
    expert_of = read_safetensors.values(export, "mowe.routing.expert_of_id", header)
    layout = read_safetensors.values(export, "mowe.routing.buckets", header)
    check(tensors["mowe.routing.bucket_of_id"][0] == "I32" and len(bucket_of) == 160,
          "bucket_of_id is not I32 [160]")
    check(tensors["mowe.routing.buckets"][0] == "I64" and tensors["mowe.routing.buckets"][1] ==
          [2, 4], "mowe.routing.buckets is not I64 [2, 4]")
    check(layout[0:4] == [28, 2, 14, 16], "bucket 0 layout %s" % layout[0:4])
    for b in range(2):
        ids, blocks, per_block = layout[4 * b], layout[4 * b + 1], layout[4 * b + 2]
        check(sum(1 for x in bucket_of if x == b) == ids, "bucket %d: routing id count" % b)
        check(all(0 <= e < blocks * per_block for x, e in zip(bucket_of, expert_of) if x == b),
              "bucket %d: an expert index outside its experts" % b)
    check(all((x == -1) == (e == -1) for x, e in zip(bucket_of, expert_of)),
          "unrouted ids must have bucket and expert -1 together")
    check(sum(1 for x in bucket_of if x == -1) >= 4, "the 4 most frequent ids are unrouted")

    check(metadata.get("mowe.step") == "3", "metadata mowe.step is %r" % metadata.get("mowe.step"))
    check("d_model: 16" in metadata.get("mowe.config", ""), "metadata mowe.config")
    check(metadata.get("format") == "pt", "metadata format is not pt")

    print("%d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
