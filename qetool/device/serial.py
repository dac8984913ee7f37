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
    """What the device says it runs: the model, its input and output tensors (H x W x C, bits,
    signedness, scale, zero point), its arena and input sizes in bytes, counter and layers."""

    version: int
    model_hash: str
    input_height: int
    input_width: int
    input_channels: int
    input_bits: int
    input_signed: int
    input_scale: float
    input_zero_point: int
    num_classes: int
    output_bits: int
    output_scale: float
    output_zero_point: int
    arena_bytes: int
    input_bytes: int
    counter: int
    num_layers: int


@dataclass(frozen=True)
class Inference:
    """One inference: class, counter kind and count, int8 outputs, per-layer counts and (when
    traced) the CRC-32 of each layer's output."""

    label: int
    counter: int
    count: int
    logits: list[int]
    layer_counts: list[int] | None
    layer_crcs: list[int] | None = None


@dataclass(frozen=True)
class Stats:
    stack_used_bytes: int
    stack_bytes: int
    arena_bytes: int
    input_bytes: int
    frames_ok: int
    frames_bad: int


class Link:
    """Request/response over a pyserial port object, with timeouts and retries. `name` says
    what is at the other end (in messages); `deadline` (time.monotonic() seconds) bounds every
    wait until it is moved (Session moves it before each inference)."""

    def __init__(self, port, timeout: float = 5.0, retries: int = 4, name: str = "the device",
                 deadline: float | None = None, hint: str = "is it running qetool firmware?"):
        self.port, self.timeout, self.retries = port, timeout, retries
        self.name, self.deadline, self.hint = name, deadline, hint
        self.seq = 0
        self.decoder = P.Decoder()
        self.retried = 0

    def _left(self) -> float:
        """Seconds left before the deadline (QetoolError once it has passed)."""
        if self.deadline is None:
            return float("inf")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise QetoolError(f"{self.name} did not finish within its deadline")
        return left

    def _io(self, op, *args):
        """A port operation; a dropped connection (the emulator killed, a cable pulled) is a
        QetoolError."""
        import serial

        try:
            return op(*args)
        except (serial.SerialException, OSError) as e:
            raise QetoolError(f"lost the connection to {self.name}: {e}") from None

    def request(self, type_: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send a request, return the response payload; DeviceError for an error answer."""
        self.seq = (self.seq + 1) & 0xFF
        frame = P.encode(type_, self.seq, payload)
        wait = timeout or self.timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            self._io(self.port.write, frame)
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
        raise QetoolError(f"no answer from {self.name} after {self.retries + 1} tries "
                          f"({wait:.1f} s each): {self.hint}")

    def _await(self, seq: int, timeout: float) -> P.Frame | None:
        end = time.monotonic() + min(timeout, self._left())
        while time.monotonic() < end:
            data = self._io(self.port.read, max(1, self._io(lambda: self.port.in_waiting) or 1))
            for f in self.decoder.feed(data):
                if f.seq == seq:
                    return f
        return None


class Device:
    """The protocol's commands."""

    def __init__(self, link: Link):
        self.link = link

    def hello(self) -> Hello:
        p = self.link.request(P.Type.HELLO)
        if len(p) < 2 or int.from_bytes(p[:2], "little") != P.VERSION:
            got = int.from_bytes(p[:2], "little") if len(p) >= 2 else None
            raise QetoolError(f"the device speaks protocol version {got}, qetool {P.VERSION}: "
                              "build and flash the firmware with this qetool")
        (version, model_hash, h, w, c, bits, signed, scale, zero, classes, out_bits, _, out_scale,
         out_zero, arena, input_bytes, counter, _, layers) = _unpack(P.HELLO_RESPONSE, p, "HELLO")
        return Hello(version, model_hash.decode("ascii", "replace"), h, w, c, bits, signed, scale,
                     zero, classes, out_bits, out_scale, out_zero, arena, input_bytes, counter, layers)

    def load(self, data: bytes) -> None:
        """Send a packed input in chunks, straight into the input slot."""
        for off in range(0, len(data), P.CHUNK):
            chunk = data[off:off + P.CHUNK]
            (loaded,) = P.LOAD_RESPONSE.unpack(
                self.link.request(P.Type.LOAD, P.LOAD_REQUEST.pack(off) + chunk))
            if loaded != off + len(chunk):
                raise QetoolError(f"device loaded {loaded} bytes, expected {off + len(chunk)}")

    def infer(self, num_classes: int, num_layers: int, per_layer: bool = False,
              timeout: float = 120.0, trace: bool = False) -> Inference:
        """Run one inference on the loaded input; outputs, counts and (with `trace`) each
        layer's output CRC come by READ chunks."""
        flags = (P.INFER_PER_LAYER if per_layer else 0) | (P.INFER_TRACE if trace else 0)
        p = self.link.request(P.Type.INFER, P.INFER_REQUEST.pack(flags), timeout)
        label, counter, _, count, out_bytes, count_bytes = _unpack(P.INFER_RESPONSE, p, "INFER")
        want = (num_classes, 4 * num_layers if per_layer else 0)
        if (out_bytes, count_bytes) != want or label >= num_classes:
            raise QetoolError(f"the device answered class {label} with {out_bytes} output and "
                              f"{count_bytes} count bytes; the build has {num_classes} classes and "
                              f"{num_layers} layers")
        logits = [b - 256 if b > 127 else b for b in self.read(P.Area.OUTPUT, out_bytes)]
        layers = self._words(P.Area.LAYER_COUNTS, num_layers) if per_layer else None
        crcs = self._words(P.Area.LAYER_CRCS, num_layers) if trace else None
        return Inference(label, counter, count, logits, layers, crcs)

    def _words(self, area: P.Area, n: int) -> list[int]:
        raw = self.read(area, 4 * n)
        return [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(n)]

    def read(self, area: P.Area, size: int) -> bytes:
        """`size` bytes of a result area, chunk by chunk."""
        out = bytearray()
        while len(out) < size:
            p = self.link.request(P.Type.READ, P.READ_REQUEST.pack(area, len(out)))
            got_area, offset = _unpack(P.READ_RESPONSE, p, "READ")
            chunk = p[P.READ_RESPONSE.size:]
            if got_area != area or offset != len(out) or not chunk or len(out) + len(chunk) > size:
                raise QetoolError(f"the device answered READ {area.name} at {len(out)} with "
                                  f"{len(chunk)} bytes at {offset} of area {got_area}")
            out += chunk
        return bytes(out)

    def stats(self) -> Stats:
        return Stats(*_unpack(P.STATS_RESPONSE, self.link.request(P.Type.STATS), "STATS"))


def _unpack(fmt, payload: bytes, what: str) -> tuple:
    """A response's fixed fields; a payload too short for them is a QetoolError."""
    if len(payload) < fmt.size:
        raise QetoolError(f"{what} response of {len(payload)} bytes, expected at least {fmt.size}")
    return fmt.unpack_from(payload)


def open_port(port: str, baud: int = 115200, timeout: float = 0.05):
    """A pyserial port: a device path or a URL such as socket://127.0.0.1:PORT."""
    import serial

    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError) as e:
        raise QetoolError(f"cannot open {port}: {e}") from None
