"""Host side of the serial protocol (qetool.device.protocol) over pyserial: a real UART
(`/dev/ttyACM0` with a baud rate) or the emulator's UART on TCP (`socket://127.0.0.1:PORT`).

Each request gets a new sequence number; a response that does not come within the timeout, or
an error frame for a CRC error, makes the request go again (the firmware answers a repeated seq
from its cache, so a retried inference does not run twice). Every wait is bounded: the host never
hangs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from qetool.errors import QetoolError
from qetool.device import protocol as P


class DeviceError(QetoolError):
    """The device answered with an error frame."""

    def __init__(self, code: int, detail: int):
        self.code, self.detail = code, detail
        name = P.Error(code).name if code in P.Error._value2member_map_ else str(code)
        super().__init__(f"device error {name} ({detail})")


@dataclass(frozen=True)
class Hello:
    version: int
    model_hash: str
    resolution: int
    in_channels: int
    num_classes: int
    arena_bytes: int
    input_bytes: int
    input_bits: int
    counter: int
    num_layers: int


@dataclass(frozen=True)
class Inference:
    label: int
    counter: int
    count: int
    logits: list[int]
    layer_counts: list[int] | None


@dataclass(frozen=True)
class Stats:
    stack_used_bytes: int
    stack_bytes: int
    arena_bytes: int
    input_bytes: int
    frames_ok: int
    frames_bad: int


class Link:
    """Request/response over a pyserial port object, with timeouts and retries."""

    def __init__(self, port, timeout: float = 5.0, retries: int = 4):
        self.port, self.timeout, self.retries = port, timeout, retries
        self.seq = 0
        self.decoder = P.Decoder()
        self.retried = 0

    def request(self, type_: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send a request, return the response payload; DeviceError for an error answer."""
        self.seq = (self.seq + 1) & 0xFF
        frame = P.encode(type_, self.seq, payload)
        wait = timeout or self.timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            self.port.write(frame)
            reply = self._await(self.seq, wait)
            if reply is None:
                continue  # lost: send again
            if reply.type == P.ERROR_TYPE:
                code, detail = P.ERROR_PAYLOAD.unpack_from(reply.payload.ljust(5, b"\0"))
                if code == P.Error.CRC:
                    continue  # our frame was damaged on the way
                raise DeviceError(code, detail)
            if reply.type != type_ | P.RESPONSE:
                raise QetoolError(f"unexpected response type {reply.type:#x} to {type_:#x}")
            return reply.payload
        raise QetoolError(f"no answer after {self.retries + 1} tries "
                          f"({wait:.1f} s each): is the device running qetool firmware?")

    def _await(self, seq: int, timeout: float) -> P.Frame | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            data = self.port.read(max(1, self.port.in_waiting or 1))
            for f in self.decoder.feed(data):
                if f.seq == seq:
                    return f
        return None


class Device:
    """The protocol's commands."""

    def __init__(self, link: Link):
        self.link = link

    def hello(self) -> Hello:
        f = P.HELLO_RESPONSE.unpack(self.link.request(P.Type.HELLO))
        return Hello(f[0], f[1].decode("ascii", "replace"), *f[2:])

    def load(self, data: bytes) -> None:
        """Send a packed input in chunks, straight into the input slot."""
        for off in range(0, len(data), P.CHUNK):
            chunk = data[off:off + P.CHUNK]
            (loaded,) = P.LOAD_RESPONSE.unpack(
                self.link.request(P.Type.LOAD, P.LOAD_REQUEST.pack(off) + chunk))
            if loaded != off + len(chunk):
                raise QetoolError(f"device loaded {loaded} bytes, expected {off + len(chunk)}")

    def infer(self, num_classes: int, num_layers: int, per_layer: bool = False,
              timeout: float = 120.0) -> Inference:
        flags = P.INFER_PER_LAYER if per_layer else 0
        p = self.link.request(P.Type.INFER, P.INFER_REQUEST.pack(flags), timeout)
        label, counter, _, count = P.INFER_RESPONSE.unpack_from(p)
        n = P.INFER_RESPONSE.size
        logits = [b - 256 if b > 127 else b for b in p[n:n + num_classes]]
        layers = None
        if per_layer:
            off = n + num_classes
            layers = [int.from_bytes(p[off + 4 * i:off + 4 * i + 4], "little") for i in range(num_layers)]
        return Inference(label, counter, count, logits, layers)

    def stats(self) -> Stats:
        return Stats(*P.STATS_RESPONSE.unpack(self.link.request(P.Type.STATS)))


def open_port(port: str, baud: int = 115200, timeout: float = 0.05):
    """A pyserial port: a device path or a URL such as socket://127.0.0.1:PORT."""
    import serial

    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError) as e:
        raise QetoolError(f"cannot open {port}: {e}") from None
