#!/usr/bin/python3
"""A safetensors reader in the Python standard library only, sharing no code with the C++ writer
(runtime/safetensors/), so that tests check our files against the format itself:

  8-byte little-endian header length N, N bytes of JSON
  {name: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
  then the data: offsets relative to the data start, row-major, little-endian.

read_header() checks every rule of the format (dtypes, integer shapes and offsets, sizes matching
shapes, tensors contiguous and covering the data exactly, string metadata) and also that the
header is padded with spaces to a multiple of 8 bytes, which the format recommends and our writer
promises. values() reads a tensor's numbers with struct.

  read_safetensors.py FILE               # prints the metadata keys and every tensor
  read_safetensors.py FILE --dump NAME   # prints the values of one tensor, one per line
"""

import json
import os
import struct
import sys

# dtype -> (bytes per element, struct format character or None when struct has none).
DTYPES = {
    "BOOL": (1, "?"), "U8": (1, "B"), "I8": (1, "b"), "F8_E5M2": (1, None), "F8_E4M3": (1, None),
    "I16": (2, "h"), "U16": (2, "H"), "F16": (2, "e"), "BF16": (2, None),
    "I32": (4, "i"), "U32": (4, "I"), "F32": (4, "f"),
    "F64": (8, "d"), "I64": (8, "q"), "U64": (8, "Q"),
}


class FormatError(Exception):
    pass


def _reject_constant(name):
    raise FormatError("non-standard JSON constant %s in the header" % name)


def read_header(path):
    """Returns (tensors: {name: (dtype, shape, begin, end)}, metadata: dict, data_start)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise FormatError("%s: shorter than the 8-byte header length" % path)
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise FormatError("%s: header length %d beyond the file (%d bytes)" % (path, n, size))
        header_bytes = f.read(n)
    text = header_bytes.decode("utf-8")
    if not text.startswith("{"):
        raise FormatError("%s: the header does not start with '{'" % path)
    if (8 + n) % 8 != 0:
        raise FormatError("%s: the data starts at byte %d, not a multiple of 8" % (path, 8 + n))
    if not text.rstrip(" ").endswith("}"):
        raise FormatError("%s: the header is not a JSON object padded with spaces" % path)

    def no_duplicates(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise FormatError("%s: key %r appears twice" % (path, k))
            d[k] = v
        return d

    header = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=_reject_constant)
    if not isinstance(header, dict):
        raise FormatError("%s: the header is not an object" % path)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError("%s: __metadata__ is not a map of strings to strings" % path)
    data_size = size - 8 - n
    tensors = {}
    for name, t in header.items():
        if not isinstance(t, dict) or set(t) != {"dtype", "shape", "data_offsets"}:
            raise FormatError("%s: tensor %r: fields %r" % (path, name, t))
        dtype, shape, offsets = t["dtype"], t["shape"], t["data_offsets"]
        if dtype not in DTYPES:
            raise FormatError("%s: tensor %r: unknown dtype %r" % (path, name, dtype))
        if not isinstance(shape, list) or not all(
                type(d) is int and d >= 0 for d in shape):
            raise FormatError("%s: tensor %r: shape %r" % (path, name, shape))
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(
                type(o) is int and o >= 0 for o in offsets):
            raise FormatError("%s: tensor %r: data_offsets %r" % (path, name, offsets))
        begin, end = offsets
        numel = 1
        for d in shape:
            numel *= d
        if end < begin or end - begin != numel * DTYPES[dtype][0]:
            raise FormatError("%s: tensor %r: %r of %s does not fill [%d, %d)"
                              % (path, name, shape, dtype, begin, end))
        if end > data_size:
            raise FormatError("%s: tensor %r ends past the data (%d bytes)" % (path, name, data_size))
        tensors[name] = (dtype, shape, begin, end)
    at = 0
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != at:
            raise FormatError("%s: tensor %r begins at %d, the previous one ends at %d"
                              % (path, name, begin, at))
        at = end
    if at != data_size:
        raise FormatError("%s: the tensors end at %d, the data has %d bytes" % (path, at, data_size))
    return tensors, metadata, 8 + n


def values(path, name, header=None):
    """The tensor's values as a flat list (BF16 widened to float exactly)."""
    tensors, _, data_start = header or read_header(path)
    dtype, shape, begin, end = tensors[name]
    with open(path, "rb") as f:
        f.seek(data_start + begin)
        raw = f.read(end - begin)
    if len(raw) != end - begin:
        raise FormatError("%s: tensor %r is truncated" % (path, name))
    size, fmt = DTYPES[dtype]
    count = (end - begin) // size
    if dtype == "BF16":
        halves = struct.unpack("<%dH" % count, raw)
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    if fmt is None:
        raise FormatError("%s: tensor %r: no struct format for %s" % (path, name, dtype))
    return list(struct.unpack("<%d%s" % (count, fmt), raw))


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    path = argv[1]
    header = read_header(path)
    tensors, metadata, data_start = header
    if len(argv) >= 4 and argv[2] == "--dump":
        for v in values(path, argv[3], header):
            print(repr(v))
        return 0
    print("%s: %d tensors, data at byte %d, metadata keys: %s"
          % (path, len(tensors), data_start, ", ".join(sorted(metadata))))
    for name, (dtype, shape, begin, end) in sorted(tensors.items(), key=lambda kv: kv[1][2]):
        print("  %s %s %s [%d, %d)" % (name, dtype, shape, begin, end))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
