"""A small model of the 16550 UART found at the PC's COM ports."""

from collections import deque

from pysev.devices import make_sink

COM1 = 0x3F8

# register offsets from the base port
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

LCR_DLAB = 0x80

LSR_DR = 0x01    # receive data ready
LSR_THRE = 0x20  # transmit holding register empty
LSR_TEMT = 0x40  # transmitter empty

IER_RDA = 0x01   # interrupt on received data
IER_THRE = 0x02  # interrupt on transmit holding register empty
IER_RLS = 0x04   # interrupt on receiver line status
IER_MS = 0x08    # interrupt on modem status change

IIR_NONE = 0x01
IIR_MS = 0x00
IIR_THRE = 0x02
IIR_RDA = 0x04
IIR_FIFO = 0xC0

FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02

MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10

MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80


class Serial16550:
    """A 16550 UART on eight ports starting at *base*.

    Transmission is instantaneous: each byte written to THR goes straight to
    *sink* (``None``, a callable taking ``bytes`` or a binary stream), and the
    line status register always reports THRE and TEMT, so a guest polling LSR
    bit 5 before each write never waits.  Bytes for the guest to receive are
    queued with :meth:`feed`.  In loopback mode (MCR bit 4) transmitted bytes
    are received back instead of sent, and MSR mirrors the MCR outputs.

    There is no interrupt line; :attr:`irq_pending` tells whether the UART
    would be asserting one.  The baud-rate divisor is stored but has no effect.
    """

    length = 8
    max_access_size = 1

    def __init__(self, sink=None, base=COM1):
        self.base = base
        self._emit = make_sink(sink)
        self.reset()

    def reset(self):
        self.rx = deque()
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.fcr = 0
        self.divisor = 12  # 9600 baud
        self.thre_pending = False  # THR-empty interrupt condition
        self.msr_delta = 0
        self.tx_count = 0

    # -- host side -------------------------------------------------------
    def feed(self, data):
        """Queue *data* (bytes) for the guest to read from RBR."""
        self.rx.extend(bytes(data))

    @property
    def irq_pending(self):
        return self._iir() & IIR_NONE == 0

    # -- guest side ------------------------------------------------------
    def _lsr(self):
        return LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)

    def _msr(self):
        if self.mcr & MCR_LOOP:
            m = self.mcr
            status = ((MSR_CTS if m & MCR_RTS else 0) | (MSR_DSR if m & MCR_DTR else 0)
                      | (MSR_RI if m & MCR_OUT1 else 0) | (MSR_DCD if m & MCR_OUT2 else 0))
        else:
            status = MSR_DCD | MSR_DSR | MSR_CTS
        return status | self.msr_delta

    def _iir(self):
        fifo = IIR_FIFO if self.fcr & FCR_ENABLE else 0
        if self.ier & IER_RDA and self.rx:
            return fifo | IIR_RDA
        if self.ier & IER_THRE and self.thre_pending:
            return fifo | IIR_THRE
        if self.ier & IER_MS and self.msr_delta:
            return fifo | IIR_MS
        return fifo | IIR_NONE

    def read(self, port, size=1):
        reg = (port - self.base) & 7
        dlab = self.lcr & LCR_DLAB
        if reg == RBR:
            if dlab:
                return self.divisor & 0xFF
            return self.rx.popleft() if self.rx else 0
        if reg == IER:
            return (self.divisor >> 8) & 0xFF if dlab else self.ier
        if reg == IIR:
            value = self._iir()
            if value & 0x0F == IIR_THRE:
                self.thre_pending = False  # reading IIR acknowledges THRE
            return value
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            return self._lsr()
        if reg == MSR:
            value = self._msr()
            self.msr_delta = 0
            return value
        return self.scr

    def write(self, port, size, value):
        reg = (port - self.base) & 7
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if reg == THR:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
                return
            if self.mcr & MCR_LOOP:
                self.rx.append(value)
            else:
                self.tx_count += 1
                self._emit(bytes((value,)))
            self.thre_pending = True  # the byte left at once: THR is empty again
        elif reg == IER:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
                return
            if value & IER_THRE and not self.ier & IER_THRE:
                self.thre_pending = True  # enabling THRE with THR empty raises it
            self.ier = value & 0x0F
        elif reg == FCR:
            if value & FCR_CLEAR_RX:
                self.rx.clear()
            self.fcr = value & 0xC9  # enable, DMA mode, trigger level
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self.mcr = value & 0x1F
        elif reg == SCR:
            self.scr = value
        # LSR and MSR are read-only
