#!/usr/bin/env python3
"""Reads TensorBoard event files with the Python standard library alone.

    tests/util/read_tfevents.py EVENT_FILE...

Prints one line per record: "version <file_version>", "session_log <STATUS> step <N>", or
"<step> <tag> <value>" for each scalar (the float32 value in repr form, nan and inf included).
Exits 1 naming the file, the record and the byte offset on any damage: a CRC mismatch of a
length or of the data, a record or a file cut short, a protobuf field that cannot be decoded.

Shares no code with the C++ writer (runtime/metrics/): its own CRC32C table, TFRecord masking
and protobuf wire-format decoder, written from the formats' descriptions, so a mistake in the
writer's framing or field numbers does not cancel out against the same mistake here.
"""

import struct
import sys

# ---- CRC32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and final xor ~0.

_POLY = 0x82F63B78


def _make_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TFRecord's mask: rotate right by 15 bits and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---- protobuf wire format

WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_FIXED32 = 0, 1, 2, 5


class FormatError(Exception):
    """Damage in an event file; the message says what and where."""


def _varint(buf, pos):
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise FormatError("varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= 1 << 64:
                raise FormatError("varint longer than 64 bits")
            return value, pos
    raise FormatError("varint longer than 10 bytes")


def fields(buf):
    """Yields (field number, wire type, value) of a message: an int for varints and fixed
    fields (raw bits), bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError("field number 0")
        if wire == WIRE_VARINT:
            value, pos = _varint(buf, pos)
        elif wire == WIRE_FIXED64:
            if pos + 8 > len(buf):
                raise FormatError(f"fixed64 field {number} runs past the end of its message")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == WIRE_FIXED32:
            if pos + 4 > len(buf):
                raise FormatError(f"fixed32 field {number} runs past the end of its message")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        elif wire == WIRE_LEN:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise FormatError(f"field {number} of {length} bytes runs past the end of its message")
            value = bytes(buf[pos:pos + length])
            pos += length
        else:  # groups (3, 4) are not used by these messages; 6 and 7 do not exist
            raise FormatError(f"field {number} has wire type {wire}, unknown to Event")
        yield number, wire, value


def _expect(number, wire, expected, message):
    if wire != expected:
        raise FormatError(f"{message} field {number} has wire type {wire}, expected {expected}")


def _int64(raw):
    return raw - (1 << 64) if raw >= 1 << 63 else raw


SESSION_STATUS = {0: "STATUS_UNSPECIFIED", 1: "START", 2: "STOP", 3: "CHECKPOINT"}


def decode_value(buf):
    """Summary.Value: tag = 1 (string), simple_value = 2 (float); others skipped."""
    value = {"tag": ""}
    for number, wire, raw in fields(buf):
        if number == 1:
            _expect(number, wire, WIRE_LEN, "Summary.Value")
            value["tag"] = raw.decode("utf-8")
        elif number == 2:
            _expect(number, wire, WIRE_FIXED32, "Summary.Value")
            value["simple_value"] = struct.unpack("<f", struct.pack("<I", raw))[0]
    return value


def decode_summary(buf):
    """Summary: repeated Value value = 1."""
    values = []
    for number, wire, raw in fields(buf):
        if number == 1:
            _expect(number, wire, WIRE_LEN, "Summary")
            values.append(decode_value(raw))
    return values


def decode_session_log(buf):
    """SessionLog: status = 1 (enum), checkpoint_path = 2, msg = 3."""
    log = {"status": 0, "checkpoint_path": "", "msg": ""}
    for number, wire, raw in fields(buf):
        if number == 1:
            _expect(number, wire, WIRE_VARINT, "SessionLog")
            log["status"] = raw
        elif number in (2, 3):
            _expect(number, wire, WIRE_LEN, "SessionLog")
            log["checkpoint_path" if number == 2 else "msg"] = raw.decode("utf-8")
    return log


def decode_event(buf):
    """Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
    summary = 5 (Summary), session_log = 7 (SessionLog); others skipped."""
    event = {"wall_time": 0.0, "step": 0}
    for number, wire, raw in fields(buf):
        if number == 1:
            _expect(number, wire, WIRE_FIXED64, "Event")
            event["wall_time"] = struct.unpack("<d", struct.pack("<Q", raw))[0]
        elif number == 2:
            _expect(number, wire, WIRE_VARINT, "Event")
            event["step"] = _int64(raw)
        elif number == 3:
            _expect(number, wire, WIRE_LEN, "Event")
            event["file_version"] = raw.decode("utf-8")
        elif number == 5:
            _expect(number, wire, WIRE_LEN, "Event")
            event["summary"] = decode_summary(raw)
        elif number == 7:
            _expect(number, wire, WIRE_LEN, "Event")
            event["session_log"] = decode_session_log(raw)
    return event


# ---- TFRecord framing: uint64 length, masked CRC of the length, data, masked CRC of the data


def read_records(path):
    """The data of every record of a file, after checking both CRCs of each and that the file
    ends exactly where a record ends. Raises FormatError naming the record and its offset."""
    with open(path, "rb") as f:
        buf = f.read()
    records = []
    pos = 0
    while pos < len(buf):
        where = f"{path}: record {len(records)} at byte {pos}"
        if pos + 12 > len(buf):
            raise FormatError(f"{where}: file ends inside the record's 12-byte header "
                              f"({len(buf) - pos} bytes left)")
        header = buf[pos:pos + 8]
        (length,) = struct.unpack_from("<Q", buf, pos)
        (length_crc,) = struct.unpack_from("<I", buf, pos + 8)
        if length_crc != masked_crc32c(header):
            raise FormatError(f"{where}: length CRC mismatch (stored {length_crc:#010x}, "
                              f"computed {masked_crc32c(header):#010x})")
        end = pos + 12 + length + 4
        if end > len(buf):
            raise FormatError(f"{where}: file ends inside the record ({length} data bytes "
                              f"announced, {len(buf) - pos - 12} bytes left)")
        data = buf[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack_from("<I", buf, pos + 12 + length)
        if data_crc != masked_crc32c(data):
            raise FormatError(f"{where}: data CRC mismatch (stored {data_crc:#010x}, "
                              f"computed {masked_crc32c(data):#010x})")
        records.append(data)
        pos = end
    return records


def read_events(path):
    """Decoded events of one file (dicts, see decode_event)."""
    events = []
    for index, data in enumerate(read_records(path)):
        try:
            events.append(decode_event(data))
        except (FormatError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: record {index}: cannot decode Event: {e}") from None
    return events


def scalars(events):
    """(step, tag, value) of every scalar, in file order."""
    return [(e["step"], v["tag"], v["simple_value"])
            for e in events for v in e.get("summary", []) if "simple_value" in v]


def describe(event):
    if "file_version" in event:
        return [f"version {event['file_version']}"]
    if "session_log" in event:
        status = event["session_log"]["status"]
        return [f"session_log {SESSION_STATUS.get(status, status)} step {event['step']}"]
    return [f"{step} {tag} {value!r}" for step, tag, value in scalars([event])]


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: read_tfevents.py EVENT_FILE...", file=sys.stderr)
        return 2
    for path in argv[1:]:
        try:
            events = read_events(path)
        except OSError as e:
            print(f"read_tfevents: cannot read {path}: {e.strerror}", file=sys.stderr)
            return 1
        except FormatError as e:
            print(f"read_tfevents: {e}", file=sys.stderr)
            return 1
        if len(argv) > 2:
            print(f"# {path}")
        for event in events:
            for line in describe(event):
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
