"""Serial protocol, host side: the decoder under corrupted, truncated, oversized and garbage
input (fuzzed), and the link's retries against a device that loses and damages frames."""

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qetool.errors import QetoolError
from qetool.device import protocol as P
from qetool.device.serial import Device, DeviceError, Link


def test_frame_layout():
    f = P.encode(P.Type.LOAD, 7, b"\x01\x02")
    assert f[:2] == b"QE" and f[2] == 2 and f[3] == 7 and f[4:8] == (2).to_bytes(4, "little")
    import zlib
    assert f[-4:] == zlib.crc32(f[2:-4]).to_bytes(4, "little")
    with pytest.raises(ValueError):
        P.encode(P.Type.LOAD, 0, bytes(P.MAX_PAYLOAD + 1))


def test_decoder_recovers_from_each_fault():
    good = [P.encode(P.Type.HELLO, i, bytes([i]) * i) for i in range(1, 6)]
    bad_crc = bytearray(P.encode(P.Type.INFER, 9, b"xyz"))
    bad_crc[-1] ^= 0xFF
    oversized = b"QE" + bytes([3, 1]) + (P.MAX_PAYLOAD + 1).to_bytes(4, "little")
    stream = b"noise" + good[0] + bytes(bad_crc) + good[1] + oversized + good[2] + b"Q" + good[3] + good[4][:7]
    d = P.Decoder()
    frames = d.feed(stream)
    assert [f.seq for f in frames] == [1, 2, 3, 4]
    assert d.bad == 2
    assert [f.seq for f in d.feed(good[4][7:])] == [5]  # the truncated frame completes later


@given(st.lists(st.one_of(st.binary(max_size=40), st.integers(0, 255)), max_size=30), st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_decoder_fuzz_never_fails_and_finds_every_intact_frame(parts, seed):
    rng = random.Random(seed)
    stream, sent = bytearray(), []
    for i, p in enumerate(parts):
        if isinstance(p, int):
            frame = P.encode(P.Type.STATS, p, bytes(rng.randrange(8)))
            sent.append(p)
            stream += frame
        else:
            stream += p.replace(b"QE", b"Q?")  # garbage never forges a magic
    d = P.Decoder()
    got = []
    pos = 0
    while pos < len(stream):  # fed in random pieces
        step = rng.randint(1, 17)
        got += [f.seq for f in d.feed(bytes(stream[pos:pos + step]))]
        pos += step
    assert got == sent
    assert len(d.buf) <= P.HEADER.size + P.MAX_PAYLOAD + P.CRC.size


class FakeDevice:
    """A device on a pyserial-like port: answers HELLO and LOAD, and can lose or damage
    frames in either direction, or stay silent."""

    def __init__(self, lose=0, damage_in=0, damage_out=0, silent=False, error=None):
        self.lose, self.damage_in, self.damage_out = lose, damage_in, damage_out
        self.silent, self.error = silent, error
        self.out = bytearray()
        self.decoder = P.Decoder()
        self.handled = []
        self.last = None

    @property
    def in_waiting(self):
        return len(self.out)

    def write(self, data):
        if self.damage_in:
            self.damage_in -= 1
            data = bytearray(data)
            data[-1] ^= 1
            self.out += P.encode(P.ERROR_TYPE, data[3], P.ERROR_PAYLOAD.pack(P.Error.CRC, 0))
            return
        for f in self.decoder.feed(bytes(data)):
            if self.silent:
                continue
            if self.last and self.last[0] == f.seq:
                reply = self.last[1]
            else:
                self.handled.append(f)
                if self.error:
                    reply = P.encode(P.ERROR_TYPE, f.seq, P.ERROR_PAYLOAD.pack(self.error, 42))
                else:
                    reply = P.encode(f.type | P.RESPONSE, f.seq, P.LOAD_RESPONSE.pack(len(f.payload) - 4))
                self.last = (f.seq, reply)
            if self.lose:
                self.lose -= 1
                continue
            if self.damage_out:
                self.damage_out -= 1
                reply = bytearray(reply)
                reply[9] ^= 0x55
                reply = bytes(reply)
            self.out += reply

    def read(self, n):
        time.sleep(0.001)
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data


@pytest.mark.parametrize("faults", [dict(lose=2), dict(damage_in=3), dict(damage_out=2),
                                    dict(lose=1, damage_out=1, damage_in=1)])
def test_link_retries_lost_and_damaged_frames(faults):
    dev = FakeDevice(**faults)
    link = Link(dev, timeout=0.05, retries=4)
    Device(link).load(bytes(100))
    assert link.retried >= 1
    assert len(dev.handled) == 1  # a retried request is answered from the cache, not run again


def test_link_gives_up_in_bounded_time():
    link = Link(FakeDevice(silent=True), timeout=0.05, retries=3)
    start = time.monotonic()
    with pytest.raises(QetoolError, match="no answer from the device after 4 tries"):
        link.request(P.Type.HELLO)
    assert time.monotonic() - start < 1.0


def test_device_errors_are_reported_by_name():
    link = Link(FakeDevice(error=P.Error.NO_IMAGE), timeout=0.05)
    with pytest.raises(DeviceError, match=r"NO_IMAGE \(42\)"):
        link.request(P.Type.INFER, b"\0")


def test_the_session_deadline_bounds_every_wait():
    link = Link(FakeDevice(silent=True), timeout=5.0, retries=100, deadline=time.monotonic() + 0.3)
    start = time.monotonic()
    with pytest.raises(QetoolError, match="the device did not finish within its deadline"):
        link.request(P.Type.HELLO)
    assert time.monotonic() - start < 1.0


class Dropped(FakeDevice):
    """The emulator killed mid-run: the socket is reset."""

    def write(self, data):
        pass

    def read(self, n):
        import serial

        raise serial.SerialException("Connection reset by peer")


def test_a_dropped_connection_is_one_error():
    with pytest.raises(QetoolError, match="lost the connection to the emulator: Connection reset by peer"):
        Link(Dropped(), timeout=0.05, name="the emulator").request(P.Type.HELLO)


class ModelDevice(FakeDevice):
    """Serves INFER and READ as the firmware does, for a model of `classes` outputs and `layers`
    layers: any size comes back in READ chunks."""

    def __init__(self, classes, layers):
        super().__init__()
        self.output = bytes((7 * i) % 256 for i in range(classes))
        self.counts = b"".join((1000 + i).to_bytes(4, "little") for i in range(layers))

    def write(self, data):
        for f in self.decoder.feed(bytes(data)):
            if f.type == P.Type.INFER:
                reply = P.INFER_RESPONSE.pack(len(self.output) - 1, P.Counter.CYCLES, f.payload[0], 12345,
                                              len(self.output), len(self.counts))
            else:
                area, offset = P.READ_REQUEST.unpack(f.payload)
                data = self.output if area == P.Area.OUTPUT else self.counts
                reply = P.READ_RESPONSE.pack(area, offset) + data[offset:offset + P.READ_CHUNK]
            self.out += P.encode(f.type | P.RESPONSE, f.seq, reply)


@pytest.mark.parametrize("classes, layers", [(2, 5), (1000, 56), (4096, 1082)])
def test_replies_of_any_size_come_in_read_chunks(classes, layers):
    dev = ModelDevice(classes, layers)
    r = Device(Link(dev, timeout=0.5)).infer(classes, layers, per_layer=True)
    assert r.label == classes - 1 and r.count == 12345
    assert bytes(b % 256 for b in r.logits) == dev.output
    assert r.layer_counts == [1000 + i for i in range(layers)]
    with pytest.raises(QetoolError, match="the build has 3 classes"):
        Device(Link(ModelDevice(4, 2), timeout=0.5)).infer(3, 2, per_layer=True)
