"""Unit tests for the port bus and the devices on it."""

import io

import pytest

from pysev.devices import DebugCon, PortBus, Serial16550, make_sink
from pysev.devices import serial as uart


class Recorder:
    """A device that records its accesses and answers reads with a fixed value."""

    def __init__(self, value=0x5A, max_access_size=1):
        self.value = value
        self.max_access_size = max_access_size
        self.log = []

    def read(self, port, size):
        self.log.append(("r", port, size))
        return self.value

    def write(self, port, size, value):
        self.log.append(("w", port, size, value))


# -- PortBus -------------------------------------------------------------------

@pytest.mark.parametrize("size, ones", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_unclaimed_port_reads_all_ones(size, ones):
    assert PortBus().read(0x80, size) == ones


def test_unclaimed_port_write_is_dropped():
    bus = PortBus()
    bus.write(0x80, 1, 0x12)
    bus.write(0x80, 4, 0x12345678)
    assert bus.read(0x80, 1) == 0xFF


def test_register_routes_range_with_absolute_port():
    bus = PortBus()
    dev = bus.register(Recorder(), 0x100, 4)
    assert bus.read(0x103, 1) == 0x5A
    bus.write(0x100, 1, 0x1FF)
    assert dev.log == [("r", 0x103, 1), ("w", 0x100, 1, 0xFF)]
    assert bus.read(0x104, 1) == 0xFF  # just past the range
    assert bus.read(0x0FF, 1) == 0xFF  # just before it
    assert bus.device_at(0x102) is dev and bus.device_at(0x104) is None


def test_register_uses_device_base_and_length():
    bus = PortBus()
    com = bus.register(Serial16550())
    assert all(bus.device_at(p) is com for p in range(0x3F8, 0x400))
    assert bus.device_at(0x3F7) is None and bus.device_at(0x400) is None


@pytest.mark.parametrize("base, length", [(0x102, 4), (0xFE, 3), (0x100, 1), (0xF0, 0x100)])
def test_overlapping_registration_is_rejected(base, length):
    bus = PortBus()
    bus.register(Recorder(), 0x100, 4)
    with pytest.raises(ValueError):
        bus.register(Recorder(), base, length)


@pytest.mark.parametrize("base, length", [(0x100, 0), (-1, 2), (0xFFFF, 2)])
def test_bad_range_is_rejected(base, length):
    with pytest.raises(ValueError):
        PortBus().register(Recorder(), base, length)


def test_adjacent_ranges_and_unregister():
    bus = PortBus()
    a = bus.register(Recorder(0x11), 0x100, 4)
    b = bus.register(Recorder(0x22), 0x104, 4)
    bus.register(Recorder(0x33), 0xFC, 4)
    assert [bus.read(p, 1) for p in (0xFF, 0x100, 0x103, 0x104, 0x107)] == [0x33, 0x11, 0x11, 0x22, 0x22]
    bus.unregister(a)
    assert bus.read(0x100, 1) == 0xFF and bus.device_at(0x104) is b
    bus.register(Recorder(0x44), 0x100, 4)  # the range is free again
    assert bus.read(0x101, 1) == 0x44


def test_wide_access_to_byte_device_is_split():
    bus = PortBus()
    dev = bus.register(Recorder(0x5A), 0x100, 2)
    assert bus.read(0x100, 2) == 0x5A5A
    assert bus.read(0x101, 2) == 0xFF5A   # second byte unclaimed
    assert bus.read(0x100, 4) == 0xFFFF5A5A
    dev.log.clear()
    bus.write(0x101, 4, 0x44332211)
    assert dev.log == [("w", 0x101, 1, 0x11)]
    bus.write(0x100, 2, 0xBBAA)
    assert dev.log[1:] == [("w", 0x100, 1, 0xAA), ("w", 0x101, 1, 0xBB)]


def test_wide_access_reaches_wide_device_whole():
    bus = PortBus()
    dev = bus.register(Recorder(0x123456789, max_access_size=4), 0xCF8, 4)
    assert bus.read(0xCF8, 4) == 0x23456789  # masked to the access size
    assert bus.read(0xCF8, 2) == 0x6789
    bus.write(0xCF8, 4, 0x80000000)
    assert dev.log[-1] == ("w", 0xCF8, 4, 0x80000000)


def test_wide_unclaimed_access_spanning_a_device():
    bus = PortBus()
    bus.register(Recorder(0x5A), 0x101, 1)
    assert bus.read(0x100, 2) == 0x5AFF
    assert bus.read(0xFF, 4) == 0xFF5AFFFF


def test_port_wraps_at_64k():
    bus = PortBus()
    bus.register(Recorder(0x77), 0, 1)
    assert bus.read(0xFFFF, 2) == 0x77FF


def test_bad_size_is_rejected():
    with pytest.raises(ValueError):
        PortBus().read(0x80, 3)
    with pytest.raises(ValueError):
        PortBus().write(0x80, 8, 0)


# -- sinks ---------------------------------------------------------------------

def test_make_sink_variants():
    got = []
    make_sink(got.append)(b"a")
    assert got == [b"a"]
    stream = io.BytesIO()
    make_sink(stream)(b"bc")
    assert stream.getvalue() == b"bc"
    make_sink(None)(b"dropped")
    with pytest.raises(TypeError):
        make_sink(42)


# -- 16550 UART ------------------------------------------------------------------

@pytest.fixture
def com():
    out = io.BytesIO()
    bus = PortBus()
    dev = bus.register(Serial16550(out))
    return bus, dev, out


def test_uart_transmit_goes_to_sink(com):
    bus, dev, out = com
    for byte in b"hi\n":
        bus.write(0x3F8, 1, byte)
    assert out.getvalue() == b"hi\n"
    assert dev.tx_count == 3


def test_uart_transmit_to_callable():
    got = []
    bus = PortBus()
    bus.register(Serial16550(got.append))
    bus.write(0x3F8, 1, 0x41)
    assert got == [b"A"]


def test_uart_lsr_always_ready_to_transmit(com):
    bus, _, _ = com
    assert bus.read(0x3FD, 1) == 0x60  # THRE | TEMT, no data
    bus.write(0x3F8, 1, 0x41)
    assert bus.read(0x3FD, 1) & 0x20


def test_uart_other_base():
    out = io.BytesIO()
    bus = PortBus()
    bus.register(Serial16550(out, base=0x2F8))
    bus.write(0x2F8, 1, 0x42)
    assert out.getvalue() == b"B" and bus.read(0x2FD, 1) == 0x60
    assert bus.read(0x3FD, 1) == 0xFF


def test_uart_receive(com):
    bus, dev, _ = com
    assert bus.read(0x3F8, 1) == 0  # empty RBR
    dev.feed(b"ok")
    assert bus.read(0x3FD, 1) == 0x61  # DR set
    assert bus.read(0x3F8, 1) == ord("o")
    assert bus.read(0x3F8, 1) == ord("k")
    assert bus.read(0x3FD, 1) == 0x60


def test_uart_divisor_latch(com):
    bus, dev, out = com
    bus.write(0x3FB, 1, 0x83)  # DLAB, 8N1
    bus.write(0x3F8, 1, 0x01)  # DLL: 115200 baud
    bus.write(0x3F9, 1, 0x00)  # DLM
    assert out.getvalue() == b""  # not transmitted
    assert dev.ier == 0           # not IER
    assert dev.divisor == 1
    assert bus.read(0x3F8, 1) == 0x01 and bus.read(0x3F9, 1) == 0x00
    assert bus.read(0x3FB, 1) == 0x83
    bus.write(0x3FB, 1, 0x03)  # DLAB off
    bus.write(0x3F8, 1, 0x58)
    assert out.getvalue() == b"X"
    assert bus.read(0x3F9, 1) == 0


def test_uart_scratch_and_mcr(com):
    bus, _, _ = com
    bus.write(0x3FF, 1, 0xA5)
    assert bus.read(0x3FF, 1) == 0xA5
    bus.write(0x3FC, 1, 0xFF)
    assert bus.read(0x3FC, 1) == 0x1F


def test_uart_msr_reports_modem_ready(com):
    bus, _, _ = com
    assert bus.read(0x3FE, 1) == 0xB0  # DCD DSR CTS


def test_uart_loopback(com):
    bus, _, out = com
    bus.write(0x3FC, 1, 0x10 | 0x02 | 0x01)  # loopback, RTS, DTR
    assert bus.read(0x3FE, 1) == 0x30        # CTS, DSR
    bus.write(0x3FC, 1, 0x10 | 0x08 | 0x04)  # loopback, OUT2, OUT1
    assert bus.read(0x3FE, 1) == 0xC0        # DCD, RI
    bus.write(0x3F8, 1, 0xAE)
    assert out.getvalue() == b""
    assert bus.read(0x3FD, 1) & 1
    assert bus.read(0x3F8, 1) == 0xAE


def test_uart_iir_and_fifo(com):
    bus, dev, _ = com
    assert bus.read(0x3FA, 1) == 0x01        # no interrupt pending, no FIFO
    bus.write(0x3FA, 1, 0x07)                # FCR: enable and clear FIFOs
    assert bus.read(0x3FA, 1) == 0xC1
    assert not dev.irq_pending
    bus.write(0x3F9, 1, uart.IER_THRE)       # enabling THRE with THR empty
    assert dev.irq_pending
    assert bus.read(0x3FA, 1) == 0xC2        # THR empty
    assert bus.read(0x3FA, 1) == 0xC1        # acknowledged by reading IIR
    bus.write(0x3F8, 1, 0x41)                # transmit: THR empty again
    assert bus.read(0x3FA, 1) == 0xC2
    bus.write(0x3F9, 1, uart.IER_RDA | uart.IER_THRE)
    dev.feed(b"x")
    assert bus.read(0x3FA, 1) == 0xC4        # received data has priority
    bus.read(0x3F8, 1)
    assert bus.read(0x3FA, 1) == 0xC1


def test_uart_fcr_clears_receive_fifo(com):
    bus, dev, _ = com
    dev.feed(b"abc")
    bus.write(0x3FA, 1, 0x03)
    assert bus.read(0x3FD, 1) == 0x60


def test_uart_lsr_and_msr_ignore_writes(com):
    bus, _, out = com
    bus.write(0x3FD, 1, 0x00)
    bus.write(0x3FE, 1, 0x00)
    assert bus.read(0x3FD, 1) == 0x60 and bus.read(0x3FE, 1) == 0xB0
    assert out.getvalue() == b""


def test_uart_word_write_splits_into_thr_and_ier(com):
    bus, dev, out = com
    bus.write(0x3F8, 2, 0x0241)
    assert out.getvalue() == b"A" and dev.ier == 0x02


def test_uart_polling_guest_loop(com):
    """What the demo guest does: poll LSR bit 5, then write THR."""
    bus, _, out = com
    for byte in b"polled":
        while not bus.read(0x3FD, 1) & 0x20:
            pass
        bus.write(0x3F8, 1, byte)
    assert out.getvalue() == b"polled"


# -- debug console -----------------------------------------------------------------

def test_debugcon_write_and_readback():
    out = io.BytesIO()
    bus = PortBus()
    bus.register(DebugCon(out))
    for byte in b"dbg\n":
        bus.write(0x402, 1, byte)
    assert out.getvalue() == b"dbg\n"
    assert bus.read(0x402, 1) == 0xE9
    assert bus.read(0x403, 1) == 0xFF


def test_debugcon_other_port_and_wide_write():
    got = []
    bus = PortBus()
    bus.register(DebugCon(got.append, base=0xE9))
    bus.write(0xE9, 2, 0x4241)  # only the low byte reaches the console port
    assert got == [b"A"]
    assert bus.read(0xE9, 1) == 0xE9
