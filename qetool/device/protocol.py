"""Serial frames (docs/protocol.md), defined once here; the firmware's qe_protocol.h is
rendered from these constants (templates/qe_protocol.h.j2).

Frame, little-endian:
    magic "QE" (2 bytes) | type u8 | seq u8 | length u32 | payload (length <= 4096) | CRC-32 u32
The CRC (IEEE 802.3, as zlib.crc32) covers type, seq, length and payload. A response has the
request's type | 0x80 and its seq; an error is type 0xFF with payload code u8 + detail u32.
The firmware answers a repeated seq with its cached response (a lost response is retried safely).

Requests and response payloads (version 2):
    HELLO  -> HELLO_RESPONSE: version, model hash (16 ASCII), the input (height, width, channels,
              bits, signed, scale f32, zero point), the output (count, bits, scale f32, zero point),
              arena bytes, input bytes, counter kind, layers
    LOAD   offset u32 + bytes (straight into the arena's input slot)  -> loaded bytes u32
    INFER  flags u8 (bit 0: per-layer counts, bit 1: trace) -> class u16, counter kind u8, flags u8, count u64,
              output bytes u32, per-layer count bytes u32 (0 without the flag)
    READ   area u8 + offset u32 -> area u8, offset u32, up to READ_CHUNK bytes of the area:
              OUTPUT (the last inference's int8 outputs), LAYER_COUNTS (u32 a layer) or, after
              a traced inference, LAYER_CRCS (the CRC-32 of each layer's output, u32; 0 for the
              head)
    STATS  -> stack used u32, stack size u32, arena bytes u32, input bytes u32, good frames u32,
              bad frames u32
Replies of any size travel as READ chunks, so nothing a valid model produces overflows a frame.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"QE"
VERSION = 2
MAX_PAYLOAD = 4096
RESPONSE = 0x80
ERROR_TYPE = 0xFF
HEADER = struct.Struct("<2sBBI")
CRC = struct.Struct("<I")
CHUNK = MAX_PAYLOAD - 4
"""Image bytes per LOAD frame (the payload also holds the 32-bit offset)."""
READ_CHUNK = MAX_PAYLOAD - 5
"""Bytes per READ response (the payload also holds the area and the 32-bit offset)."""
FRAME_TIMEOUT_MS = 200
"""The firmware drops a frame whose next byte does not come within this many ms."""


class Type(IntEnum):
    HELLO = 0x01
    LOAD = 0x02
    INFER = 0x03
    STATS = 0x04
    READ = 0x05


class Error(IntEnum):
    CRC = 1
    OVERSIZE = 2
    UNKNOWN_TYPE = 3
    BAD_LENGTH = 4
    OUT_OF_RANGE = 5
    OUT_OF_ORDER = 6
    NO_IMAGE = 7
    NO_RESULT = 8


class Area(IntEnum):
    """What a READ request reads."""

    OUTPUT = 1
    LAYER_COUNTS = 2
    LAYER_CRCS = 3


class Counter(IntEnum):
    """What an INFER count measures."""

    NONE = 0
    CYCLES = 1          # DWT CYCCNT on the board
    INSTRUCTIONS = 2    # counted exactly by the emulator's plugin on the host side
    SYSTICK = 3         # the emulator's SysTick ticks: the host's estimate without the plugin


INFER_PER_LAYER = 0x01
INFER_TRACE = 0x02
"""INFER flags: per-layer counts; a CRC-32 of each layer's output (taken outside the counted
layer regions; the host asks for it only to find where a result first differs)."""

HELLO_RESPONSE = struct.Struct("<H16sHHHBBfiHBBfiIIBBH")
LOAD_REQUEST = struct.Struct("<I")
LOAD_RESPONSE = struct.Struct("<I")
INFER_REQUEST = struct.Struct("<B")
INFER_RESPONSE = struct.Struct("<HBBQII")
READ_REQUEST = struct.Struct("<BI")
READ_RESPONSE = struct.Struct("<BI")
STATS_RESPONSE = struct.Struct("<IIIIII")
ERROR_PAYLOAD = struct.Struct("<BI")


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def encode(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame's bytes."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    body = HEADER.pack(MAGIC, type_, seq & 0xFF, len(payload))[2:] + payload
    return MAGIC + body + CRC.pack(zlib.crc32(body))


class Decoder:
    """Byte-stream parser, the firmware's state machine in Python: hunts the magic, rejects an
    oversized length or a bad CRC (counting them in `bad`) and resynchronises on the next magic."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        while True:
            start = self.buf.find(MAGIC)
            if start < 0:
                del self.buf[:max(0, len(self.buf) - 1)]
                return out
            del self.buf[:start]
            if len(self.buf) < HEADER.size:
                return out
            _, type_, seq, length = HEADER.unpack_from(self.buf)
            if length > MAX_PAYLOAD:
                self.bad += 1
                del self.buf[:2]
                continue
            end = HEADER.size + length + CRC.size
            if len(self.buf) < end:
                return out
            body = bytes(self.buf[2:HEADER.size + length])
            (crc,) = CRC.unpack_from(self.buf, HEADER.size + length)
            if crc != zlib.crc32(body):
                self.bad += 1
                del self.buf[:2]
                continue
            out.append(Frame(type_, seq, body[6:]))
            del self.buf[:end]
