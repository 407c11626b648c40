"""A unicorn-shaped facade over the engine, for unit-level instruction tests.

    from pysev.api import Emulator
    emu = Emulator(mode=64)
    emu.mem_map(0x1000, 0x1000)
    emu.mem_write(0x1000, bytes.fromhex("4801d8f4"))     # add rax, rbx; hlt
    emu.reg_write("rax", 2); emu.reg_write("rbx", 3)
    emu.emu_start(0x1000, 0x1003)
    assert emu.reg_read("rax") == 5

Memory here is physical memory: Emulator maps RAM with mem_map, and an
address nothing maps reads as all ones and ignores writes, as on a PC.
"""

import sys

from decoder.records import ES, CS, SS, DS, FS, GS
from pysev.cpu import CPU, EngineError, GuestFault
from pysev.cpu.faults import TRAPS, VECTOR_NAMES
from pysev.cpu.state import GPR_NAMES
from pysev.mem import PhysMem, MemoryMapError, PAGE_MASK

HOOK_CODE, HOOK_MEM_READ, HOOK_MEM_WRITE = "code", "mem_read", "mem_write"
DEBUG_ITEMS = {"in_asm": "guest instructions of each translated block",
               "op": "the Python source emitted for each translated block"}


class EmulatorError(Exception):
    """A bad call to the Emulator API (bad register name, bad mapping, ...)."""


class GuestException(Exception):
    """The guest took an exception that nothing in this API delivers.

    vector is the exception number (6 for #UD, 0 for #DE, 3 for int3 ...),
    address the address of the instruction that raised it.
    """

    def __init__(self, vector, address, error_code=None, detail=""):
        self.vector, self.address, self.error_code = vector, address, error_code
        self.detail = detail
        name = VECTOR_NAMES.get(vector, "interrupt")
        msg = f"guest exception {name} (vector {vector}) at {address:#x}"
        if error_code is not None:
            msg += f", error code {error_code:#x}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


def _register_table():
    table = {}
    for n, name in enumerate(GPR_NAMES):
        table[name] = (n, 8, 0)
        if n < 8:
            base = name[1:]                      # ax, cx, ..., sp, bp, si, di
            table["e" + base] = (n, 4, 0)
            table[base] = (n, 2, 0)
        else:
            table[name + "d"] = (n, 4, 0)
            table[name + "w"] = (n, 2, 0)
            table[name + "b"] = (n, 1, 0)
    for n, name in enumerate(("al", "cl", "dl", "bl")):
        table[name] = (n, 1, 0)
        table[name[0] + "h"] = (n, 1, 8)
    for n, name in ((4, "spl"), (5, "bpl"), (6, "sil"), (7, "dil")):
        table[name] = (n, 1, 0)
    return table


_REGS = _register_table()
_SEGS = {"es": ES, "cs": CS, "ss": SS, "ds": DS, "fs": FS, "gs": GS}


class Emulator:
    def __init__(self, mode=64, ports=None, debug=(), log=None):
        if mode not in (16, 32, 64):
            raise EmulatorError(f"mode must be 16, 32 or 64, not {mode!r}")
        unknown = [d for d in debug if d not in DEBUG_ITEMS]
        if unknown:
            raise EmulatorError(f"unknown debug item {unknown[0]!r}; "
                                f"known: {', '.join(DEBUG_ITEMS)}")
        self.mode = mode
        self.mem = PhysMem()
        self.cpu = CPU(self.mem, ports=ports, log=log or sys.stderr, debug=debug)
        cpu = self.cpu
        # Exceptions are reported to the caller (GuestException), not delivered.
        # Like unicorn, linear addresses are physical in every mode: the
        # 64-bit mode here is long mode with an identity map and no page tables.
        cpu.deliver_exceptions = False
        flat = {16: 0x9300, 32: 0xC09300, 64: 0xC09300}[mode]
        code = {16: 0x9B00, 32: 0xC09B00, 64: 0xA09B00}[mode]
        for seg in range(6):
            cpu.set_segment(seg, 0, 0, 0xFFFF if mode == 16 else 0xFFFFFFFF, flat)
        cpu.seg_attr[CS] = code
        cpu.cr0 = {16: 0x60000010, 32: 0x60000011, 64: 0xE0000011}[mode]
        if mode == 64:
            cpu.cr4 = 0x20
            cpu.efer = 0x500                     # LME and LMA
        cpu.update_mode()
        self._hooks = {HOOK_CODE: [], HOOK_MEM_READ: [], HOOK_MEM_WRITE: []}
        self.stop_reason = None

    # ---- memory ----------------------------------------------------------------------
    def mem_map(self, address, size):
        if address & PAGE_MASK or size & PAGE_MASK or size <= 0:
            raise EmulatorError(f"mem_map({address:#x}, {size:#x}): address and size must be "
                                "positive multiples of 4 KiB")
        try:
            self.mem.add_ram(address, size, name=f"ram@{address:#x}")
        except MemoryMapError as exc:
            raise EmulatorError(f"mem_map({address:#x}, {size:#x}): {exc}") from None

    def mem_write(self, address, data):
        data = bytes(data)
        self.mem.write_bytes(address, data)
        self.cpu.invalidate_code(address, len(data))

    def mem_read(self, address, size):
        return self.mem.read_bytes(address, size)

    # ---- registers -------------------------------------------------------------------
    def reg_read(self, name):
        cpu = self.cpu
        key = name.lower()
        if key in _REGS:
            n, size, shift = _REGS[key]
            return (cpu.regs[n] >> shift) & ((1 << (8 * size)) - 1)
        if key in ("rip", "eip", "ip"):
            return cpu.rip & {"rip": 2**64 - 1, "eip": 2**32 - 1, "ip": 0xFFFF}[key]
        if key in ("rflags", "eflags", "flags"):
            return cpu.eflags
        if key in _SEGS:
            return cpu.seg_sel[_SEGS[key]]
        if key in ("fs_base", "gs_base"):
            return cpu.seg_base[FS if key == "fs_base" else GS]
        raise EmulatorError(f"unknown register {name!r}")

    def reg_write(self, name, value):
        cpu = self.cpu
        key = name.lower()
        if not isinstance(value, int) or value < -(1 << 63):
            raise EmulatorError(f"register value must be an integer, not {value!r}")
        if key in _REGS:
            n, size, shift = _REGS[key]
            m = ((1 << (8 * size)) - 1) << shift
            v = (value << shift) & m
            if size == 4:
                cpu.regs[n] = v                   # 32-bit writes zero-extend, as in the CPU
            else:
                cpu.regs[n] = (cpu.regs[n] & ~m & (2**64 - 1)) | v
        elif key in ("rip", "eip", "ip"):
            cpu.rip = value & (2**64 - 1)
        elif key in ("rflags", "eflags", "flags"):
            cpu.eflags = value
        elif key in _SEGS:
            seg = _SEGS[key]
            base = (value & 0xFFFF) << 4 if self.mode == 16 else cpu.seg_base[seg]
            cpu.set_segment(seg, value, base)
        elif key in ("fs_base", "gs_base"):
            cpu.seg_base[FS if key == "fs_base" else GS] = value & (2**64 - 1)
        else:
            raise EmulatorError(f"unknown register {name!r}")

    # ---- running ---------------------------------------------------------------------
    @property
    def insn_count(self):
        return self.cpu.icount

    def hook_add(self, htype, callback, begin=1, end=0):
        if htype not in self._hooks:
            raise EmulatorError(f"unknown hook type {htype!r}")
        self._hooks[htype].append((callback, begin, end))
        if htype != HOOK_CODE:
            self.cpu.mem_hook = self._mem_hook
            self.cpu.set_tlb_enabled(False)
        return (htype, len(self._hooks[htype]) - 1)

    def _mem_hook(self, kind, addr, size, value):
        for cb, begin, end in self._hooks[HOOK_MEM_READ if kind == "read" else HOOK_MEM_WRITE]:
            if begin > end or begin <= addr <= end:
                cb(self, kind, addr, size, value)

    def _code_hook(self, ip):
        lin = self.cpu.code_linear(ip)
        blk = self.cpu.block_at(ip, 1)
        size = blk.end_ip - blk.start
        for cb, begin, end in self._hooks[HOOK_CODE]:
            if begin > end or begin <= lin <= end:
                cb(self, lin, size)

    def emu_stop(self):
        self.cpu.stop_requested = self.cpu.exit_request = True

    def emu_start(self, begin, until, count=0):
        """Run from `begin` until RIP == `until`, `count` instructions, HLT or emu_stop()."""
        cpu = self.cpu
        cpu.rip = begin
        limit = count if count > 0 else float("inf")
        hook = self._code_hook if self._hooks[HOOK_CODE] else None
        try:
            self.stop_reason = cpu.run(limit, until, hook)
        except GuestFault as f:
            address = cpu.rip
            if f.vector in TRAPS or f.next_ip is not None:
                cpu.rip = f.next_ip           # a trap completed (and was counted)
            raise GuestException(f.vector, address, f.error_code, f.detail) from None
        return self.stop_reason

    def block_source(self, address):
        """The Python source that the translator emits for the block at `address`."""
        return self.cpu.block_at(address).source


__all__ = ["Emulator", "EmulatorError", "GuestException", "EngineError",
           "HOOK_CODE", "HOOK_MEM_READ", "HOOK_MEM_WRITE"]
