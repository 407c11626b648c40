"""The paging state of a guest that runs elsewhere, read over QMP.

    with QMPClient("/tmp/pysev.sock") as qmp:
        target = qmp_target(qmp)
        expl = explain(target.mem, target.cr3, 0xfffff000, target.paging)

Only what QEMU itself offers is used, so this works against QEMU as well as
against ``pysev run -qmp``:

* the control registers come from HMP ``info registers`` (CR0, CR3, CR4, EFER);
* the physical address width from the CPU's ``phys-bits`` QOM property
  (``query-cpus-fast`` names the CPU);
* SEV from ``query-sev``, and the C-bit position and reduced-phys-bits from the
  memory-encryption object's ``cbitpos`` and ``reduced-phys-bits`` properties;
* each paging-structure entry from HMP ``xp /1gx ADDR`` (or ``/1wx``), which
  reads guest-physical memory without setting accessed or dirty bits.
"""

import re

from pysev.cpu.system import paging_config
from pysev.qmp.client import QMPClientError

_REG = re.compile(r"\b(RIP|CR0|CR3|CR4|EFER)=([0-9a-fA-F]+)")
_XP = re.compile(r"^\s*[0-9a-fA-F]+:\s+0x([0-9a-fA-F]+)", re.M)
DEFAULT_PHYS_BITS = 40          # QEMU's TCG default when the CPU does not say


class RemoteError(Exception):
    """The monitor did not give what a walk needs; the message says what."""


class QMPMemory:
    """Guest-physical reads through HMP ``xp``: what the page walk needs of memory."""

    def __init__(self, qmp):
        self.qmp = qmp
        self.reads = 0                  # xp commands sent
        # one value per entry: explain() reads each entry twice (verdict, then decoding),
        # and a guest that runs on must not show it two different values
        self._seen = {}

    def read(self, addr, size):
        key = (addr, size)
        if key not in self._seen:
            self._seen[key] = self._xp(addr, size)
        return self._seen[key]

    def _xp(self, addr, size):
        unit = {4: "w", 8: "g"}.get(size)
        if unit is None:
            raise RemoteError(f"xp reads 4 or 8 bytes here, not {size}")
        out = _hmp(self.qmp, f"xp /1{unit}x {addr:#x}")
        found = _XP.search(out) if isinstance(out, str) else None
        if found is None:
            raise RemoteError(f"xp at {addr:#x} gave no value: {str(out).strip()!r}")
        self.reads += 1
        return int(found.group(1), 16)

    def write(self, addr, size, value):
        pass                    # an explanation never changes guest memory


class QMPTarget:
    """What explain() needs of a remote guest: memory, CR3, the paging configuration."""

    def __init__(self, mem, registers, phys_bits, sev):
        self.mem = mem
        self.registers = registers          # {"CR0": int, "CR3": ..., "CR4": ..., "EFER": ...}
        self.phys_bits = phys_bits
        self.sev = sev                      # None, or {"cbitpos": n, "reduced-phys-bits": n}
        c_bit = sev["cbitpos"] if sev else 0
        reduced = sev["reduced-phys-bits"] if sev else 0
        self.cr3 = registers["CR3"]
        self.paging = paging_config(registers["CR0"], registers["CR4"], registers["EFER"],
                                    phys_bits, c_bit, reduced)


def _hmp(qmp, command_line):
    return qmp.execute("human-monitor-command", **{"command-line": command_line})


def _int_property(qmp, path, name, lo, hi):
    """An integer QOM property in lo..hi (QEMU returns ints; a string of digits is taken)."""
    value = qmp.execute("qom-get", path=path, property=name)
    try:
        number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) \
            else None
    except ValueError:
        number = None
    if number is None or not lo <= number <= hi:
        raise RemoteError(f"{path} property {name} is {value!r}, not a number in {lo}..{hi}")
    return number


def qmp_target(qmp):
    """Read the paging state of the guest behind *qmp* (a connected QMPClient)."""
    text = _hmp(qmp, "info registers")
    if not isinstance(text, str):
        raise RemoteError("info registers did not answer with text")
    registers = dict((name, int(value, 16)) for name, value in _REG.findall(text))
    missing = [r for r in ("CR0", "CR3", "CR4", "EFER") if r not in registers]
    if missing:
        raise RemoteError(f"info registers did not show {', '.join(missing)}")
    phys_bits = DEFAULT_PHYS_BITS
    cpus = qmp.execute("query-cpus-fast")
    if not isinstance(cpus, list) or not all(isinstance(c, dict) for c in cpus):
        raise RemoteError("query-cpus-fast did not answer with a list of CPUs")
    if cpus and isinstance(cpus[0].get("qom-path"), str):
        try:
            phys_bits = _int_property(qmp, cpus[0]["qom-path"], "phys-bits", 0, 52) \
                or DEFAULT_PHYS_BITS
        except QMPClientError:              # a QEMU without the property
            pass
        if phys_bits < 32:                  # QEMU's own limits for phys-bits: 32..52
            raise RemoteError(f"the CPU's phys-bits is {phys_bits}, not in 32..52")
    sev = None
    try:
        info = qmp.execute("query-sev")
    except QMPClientError:                  # QEMU without SEV answers with an error
        info = {}
    if not isinstance(info, dict):
        raise RemoteError("query-sev did not answer with an object")
    if info.get("enabled"):
        obj = qmp.execute("qom-get", path="/machine", property="memory-encryption")
        if not isinstance(obj, str) or not obj:
            raise RemoteError("SEV is enabled but /machine names no memory-encryption object")
        path = f"/objects/{obj}"
        # the C-bit lies above the physical address bits it leaves usable
        sev = {"cbitpos": _int_property(qmp, path, "cbitpos", 32, 63),
               "reduced-phys-bits": _int_property(qmp, path, "reduced-phys-bits", 0,
                                                  phys_bits - 32)}
    return QMPTarget(QMPMemory(qmp), registers, phys_bits, sev)
