"""pysev.Machine: the memory map, firmware loading, options, devices, reset, traces."""

import io
import json
import os
import types

import pytest

from pysev import Machine, MachineError
from pysev import trace
from pysev.cpu.cpuid import get_model
from pysev.machine import memory_layout, parse_args, ram_split

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
FOUR_GIB = 1 << 32

from sysboot import TOP_64K, hello_source, nasm  # noqa: E402

HELLO = hello_source('"hello", 10')
HELLO_INSNS = 46            # reset-vector jmp, 2 movs, 6 x 6 loop instructions, 4 + 3 at the end

# sets up an empty IVT limit and takes #BP: #GP, #DF, then a triple fault
TRIPLE = r"""
    mov dx, 0x3f8
    mov al, 'R'
    out dx, al
    lidt [cs:null_idt]
    int3
    hlt
null_idt: dw 0
          dd 0
"""
TRIPLE_INSNS = 6

# reads the debug console port into 0x500, writes "dbg" to it, halts
DEBUGCON = r"""
    mov dx, 0x402
    in al, dx
    mov [0x500], al
    mov al, 'd'
    out dx, al
    mov al, 'b'
    out dx, al
    mov al, 'g'
    out dx, al
    hlt
"""


def bios(code, size=0x10000, fill=0):
    """A firmware image of *size* bytes whose top 64 KiB run *code* from reset."""
    top = nasm(TOP_64K.format(code=code))
    assert len(top) == 0x10000
    return bytes([fill]) * (size - 0x10000) + top


def pattern(size):
    """Bytes that differ from page to page (and from zero and all ones)."""
    return b"".join(bytes([(page % 250) + 1]) * 4096 for page in range(size // 4096))


@pytest.fixture
def hello_path(tmp_path):
    path = tmp_path / "hello.bin"
    path.write_bytes(bios(HELLO))
    return str(path)


class Capture:
    def __init__(self):
        self.data = bytearray()

    def __call__(self, data):
        self.data += data


# ---- memory map ------------------------------------------------------------------------------

def test_rom_ends_at_4g_and_its_last_128k_appear_below_1m():
    image = pattern(256 * KiB)
    m = Machine(bios=image, serial=None)
    assert m.read_phys(FOUR_GIB - len(image), len(image)) == image
    assert m.read_phys(0xE0000, 128 * KiB) == image[-128 * KiB:]
    # the reset vector sits 16 bytes below 4 GiB
    assert m.read_phys(0xFFFFFFF0, 16) == image[-16:]
    # both are ROM: guest writes are dropped
    m.write_phys(0xFFFFF000, b"\x00" * 16)
    m.write_phys(0xE0000, b"\x00" * 16)
    assert m.read_phys(0xFFFFF000, 16) == image[-4096:-4080]
    assert m.read_phys(0xE0000, 16) == image[-128 * KiB:-128 * KiB + 16]
    # below the window, RAM
    m.write_phys(0xDFFF0, b"ram!")
    assert m.read_phys(0xDFFF0, 4) == b"ram!"
    # nothing just below the ROM
    assert m.read_phys(FOUR_GIB - len(image) - 16, 16) == b"\xff" * 16


def test_a_small_image_is_aliased_whole():
    image = pattern(64 * KiB)
    m = Machine(bios=image, serial=None)
    assert m.read_phys(0xF0000, 64 * KiB) == image
    assert m.read_phys(0xFFFF0000, 64 * KiB) == image
    m.write_phys(0xE0000, b"ram!")
    assert m.read_phys(0xE0000, 4) == b"ram!"


def test_the_vga_window_is_a_hole():
    m = Machine(bios=pattern(64 * KiB), serial=None)
    assert m.read_phys(0xA0000, 0x20000) == b"\xff" * 0x20000
    m.write_phys(0xB8000, b"text")
    assert m.read_phys(0xB8000, 4) == b"\xff" * 4
    for addr in (0x9FFFC, 0xC0000):
        m.write_phys(addr, b"ram!")
        assert m.read_phys(addr, 4) == b"ram!"


@pytest.mark.parametrize("size", [2 * MiB, 64 * MiB, 128 * MiB])
def test_ram_size(size):
    m = Machine(bios=pattern(64 * KiB), serial=None, memory=size)
    m.write_phys(size - 4, b"last")
    assert m.read_phys(size - 4, 4) == b"last"
    assert m.read_phys(size, 4) == b"\xff" * 4
    assert m.read_phys(FOUR_GIB, 4) == b"\xff" * 4


def test_default_ram_is_128m(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "null"])
    assert m.ram_size == 128 * MiB
    assert m.read_phys(128 * MiB - 1, 1) == b"\x00"
    assert m.read_phys(128 * MiB, 1) == b"\xff"


@pytest.mark.parametrize("machine, size, below", [
    ("q35", 2 * GiB, 2 * GiB),
    ("q35", 0xB0000000 - 8 * KiB, 0xB0000000 - 8 * KiB),
    ("q35", 0xB0000000, 2 * GiB),
    ("q35", 3 * GiB, 2 * GiB),
    ("q35", 8 * GiB, 2 * GiB),
    ("pc", 3 * GiB, 3 * GiB),
    ("pc", 0xE0000000, 3 * GiB),
    ("pc", 4 * GiB, 3 * GiB),
])
def test_ram_split_follows_qemu(machine, size, below):
    assert ram_split(machine, size) == (below, size - below)
    regions = {name: (kind, start, length)
               for kind, start, length, name in memory_layout(machine, size, 2 * MiB)}
    assert regions["ram-below-4g"] == ("ram", 1 * MiB, below - 1 * MiB)
    if size > below:
        assert regions["ram-above-4g"] == ("ram", FOUR_GIB, size - below)
    else:
        assert "ram-above-4g" not in regions
    assert regions["bios"] == ("rom", FOUR_GIB - 2 * MiB, 2 * MiB)
    assert regions["isa-bios"] == ("alias", 1 * MiB - 128 * KiB, 128 * KiB)
    assert regions["ram-low"] == ("ram", 0, 0xA0000)
    assert regions["ram-c0000"] == ("ram", 0xC0000, 0x20000)


def _mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * KiB
    except OSError:
        pass
    return 0


@pytest.mark.skipif(_mem_available() < 8 * GiB,
                    reason="building a 3 GiB machine touches about 1 GiB of host memory")
def test_ram_above_2_75g_is_split_at_2g():
    m = Machine(bios=pattern(64 * KiB), serial=None, memory=3 * GiB)
    for addr in (2 * GiB - 4, FOUR_GIB, FOUR_GIB + GiB - 4):
        m.write_phys(addr, b"ram!")
        assert m.read_phys(addr, 4) == b"ram!"
    for addr in (2 * GiB, 0xB0000000, FOUR_GIB + GiB):
        assert m.read_phys(addr, 4) == b"\xff" * 4


# ---- firmware files -------------------------------------------------------------------------

def test_bios_file_errors(tmp_path):
    missing = tmp_path / "missing.fd"
    empty = tmp_path / "empty.fd"
    empty.write_bytes(b"")
    odd = tmp_path / "odd.fd"
    odd.write_bytes(b"\x90" * 5000)
    big = tmp_path / "big.fd"
    with open(big, "wb") as f:
        f.truncate(16 * MiB + 4 * KiB)
    cases = {
        missing: f"pysev run: -bios: cannot read '{missing}': No such file or directory",
        tmp_path: f"pysev run: -bios: cannot read '{tmp_path}': Is a directory",
        empty: f"pysev run: -bios: '{empty}' is empty",
        odd: f"pysev run: -bios: '{odd}' is 5000 bytes, not a multiple of 4 KiB",
        big: f"pysev run: -bios: '{big}' is larger than 16 MiB",
    }
    for path, message in cases.items():
        with pytest.raises(MachineError) as err:
            Machine.from_args(["-bios", str(path)])
        assert str(err.value) == message


def test_bios_bytes_are_checked_too():
    with pytest.raises(MachineError, match="not a multiple of 4 KiB"):
        Machine(bios=b"\x90" * 100)
    with pytest.raises(MachineError, match="no firmware"):
        Machine(bios=None)


# ---- options ---------------------------------------------------------------------------------

SUPPORTED = ("-bios, -m, -cpu, -machine, -serial, -debugcon, -display, -nographic, -no-reboot,"
             " -d, -D, -singlestep, -accel, -smp, -global, --max-insns, --state-json, -object,"
             " -kernel, -initrd, -append, -S, -qmp, --save-snapshot, --load-snapshot, -seed")

@pytest.mark.parametrize("argv, message", [
    (["-foo"], f"unknown option '-foo' (supported: {SUPPORTED})"),
    (["--frobnicate=1"], f"unknown option '--frobnicate=1' (supported: {SUPPORTED})"),
    (["-m", "12X"], "-m: invalid size '12X'"),
    (["-m", "512K"], "-m: size '512K' is too small (at least 1 MiB)"),
    (["-m", "1G,slots=2"], "-m: unsupported memory option 'slots'"),
    (["-machine", "virt"], "-machine: unsupported machine type 'virt' (supported: q35, pc)"),
    (["-machine", "q35,smm=off"], "-machine: unsupported machine property 'smm'"),
    (["-machine", "q35,accel=kvm"],
     "-machine: unsupported accelerator 'kvm' (pysev is tcg-like)"),
    (["-cpu", "host,+sev"], "-cpu: CPU properties are not supported ('+sev')"),
    (["-serial", "pty"],
     "-serial: unsupported character device 'pty' (supported: stdio, file:PATH, null, none)"),
    (["-display", "gtk"],
     "-display: unsupported display 'gtk' (pysev has none: use -display none)"),
    (["-d", "in_asm,exec"], "-d: unknown log item 'exec' (try -d help)"),
    (["-accel", "kvm"], "-accel: unsupported accelerator 'kvm' (supported: tcg)"),
    (["-smp", "4"], "-smp: only one CPU is supported, not '4'"),
    (["-global", "foo.bar=1"],
     "-global: unsupported property 'foo.bar=1' (supported: isa-debugcon.iobase=PORT)"),
    (["--max-insns", "many"], "--max-insns: invalid number 'many'"),
    (["-bios"], "option '-bios' needs an argument"),
    (["-no-reboot", "disk.img"], "unexpected argument 'disk.img' (disk images are not supported)"),
])
def test_option_errors_name_the_option(argv, message):
    with pytest.raises(MachineError) as err:
        Machine.from_args(argv)
    assert str(err.value) == "pysev run: " + message


def test_unknown_cpu_model(hello_path):
    with pytest.raises(MachineError) as err:
        Machine.from_args(["-bios", hello_path, "-cpu", "Pentium"])
    assert str(err.value) == "pysev run: -cpu: unknown CPU model 'Pentium' (try -cpu help)"


def test_parse_args_accepts_qemu_spellings():
    opts = parse_args(["--bios", "x.fd", "-m", "size=1.5G", "-M", "pc-q35-7.2,accel=tcg",
                       "-nographic", "-display", "none", "-serial", "mon:stdio",
                       "-serial", "file:/tmp/com2", "-debugcon", "file:/tmp/dbg",
                       "-global", "isa-debugcon.iobase=0xe9", "-no-reboot", "-smp", "1",
                       "-accel", "tcg,one-insn-per-tb=on", "-d", "in_asm,cpu", "-d", "int",
                       "-D", "/tmp/log", "--max-insns=100", "--state-json", "/tmp/s.json"])
    assert opts.bios == "x.fd"
    assert opts.memory == 1536 * MiB
    assert opts.machine == "q35"
    assert opts.serial == ["mon:stdio", "file:/tmp/com2"]
    assert (opts.debugcon, opts.debugcon_port) == ("file:/tmp/dbg", 0xE9)
    assert opts.no_reboot and opts.single_step
    assert opts.log_items == ("in_asm", "cpu", "int")
    assert opts.log_file == "/tmp/log"
    assert (opts.max_insns, opts.state_json) == (100, "/tmp/s.json")


@pytest.mark.parametrize("text, size", [("256", 256 * MiB), ("64M", 64 * MiB), ("1g", GiB),
                                        ("2048k", 2 * MiB), ("1.5G", 1536 * MiB),
                                        ("1000000", 1000000 * MiB)])
def test_memory_sizes(text, size):
    assert parse_args(["-m", text]).memory == size


def test_memory_size_rounds_up_to_8k():
    assert parse_args(["-m", "1048577b"]).memory == 1 * MiB + 8 * KiB


@pytest.mark.parametrize("argv, what", [(["-cpu", "help"], "cpu"), (["-d", "help"], "d"),
                                        (["-machine", "help"], "machine"), (["-h"], "usage")])
def test_help_requests(argv, what):
    assert parse_args(argv).help == what
    with pytest.raises(MachineError, match="answered by the command line tool"):
        Machine.from_args(argv)


# ---- reset and running -----------------------------------------------------------------------

def test_reset_state(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "null"])
    assert m.run(max_insns=0) == "count"
    s = m.state_dict()
    assert s["icount"] == 0 and s["stop_reason"] == "count"
    assert s["regs"]["rip"] == 0xFFF0
    assert s["regs"]["rdx"] == get_model("EPYC-Milan").signature() == 0x00A00F11
    assert s["regs"]["rflags"] == 2
    assert s["segments"]["cs"] == {"selector": 0xF000, "base": 0xFFFF0000, "limit": 0xFFFF,
                                   "attr": 0x9B00}
    for seg in ("es", "ss", "ds", "fs", "gs"):
        assert s["segments"][seg] == {"selector": 0, "base": 0, "limit": 0xFFFF, "attr": 0x9300}
    assert s["segments"]["ldtr"] == {"selector": 0, "base": 0, "limit": 0xFFFF, "attr": 0x8200}
    assert s["segments"]["tr"] == {"selector": 0, "base": 0, "limit": 0xFFFF, "attr": 0x8B00}
    assert s["gdtr"] == s["idtr"] == {"base": 0, "limit": 0xFFFF}
    assert (s["cr0"], s["cr2"], s["cr3"], s["cr4"], s["efer"]) == (0x60000010, 0, 0, 0, 0)
    json.dumps(s)


def test_cpu_model_sets_the_reset_signature(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "null", "-cpu", "qemu64"])
    assert m.state_dict()["regs"]["rdx"] == get_model("qemu64").signature() == 0x60FB1
    assert m.cpu.cpuid_fn(0, 0)[1:] == get_model("qemu64").cpuid(0, 0)[1:]


def test_hello_bios_prints_and_posts():
    out = Capture()
    m = Machine(bios=bios(HELLO), serial=out)
    assert m.run() == "hlt"
    assert bytes(out.data) == b"hello\n"
    assert m.icount == HELLO_INSNS
    assert m.post.value == 0x42 and m.post.history == [0x42]
    assert m.ports.read(0x80, 1) == 0x42


def test_run_counts_per_call(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "null"])
    assert m.run(max_insns=10) == "count"
    assert m.run(max_insns=10) == "count"
    assert m.icount == 20
    assert m.run() == "hlt" and m.icount == HELLO_INSNS


def test_max_insns_option_is_run_default(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "null", "--max-insns", "7"])
    assert m.run() == "count" and m.icount == 7


def test_serial_to_file(tmp_path, hello_path):
    out = tmp_path / "com1.txt"
    with Machine.from_args(["-bios", hello_path, "-serial", f"file:{out}"]) as m:
        assert m.run() == "hlt"
    assert out.read_bytes() == b"hello\n"


def test_serial_none_leaves_com1_unclaimed(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "none"])
    assert m.serial is None
    assert m.ports.read(0x3FD, 1) == 0xFF
    assert m.run() == "hlt"


def test_serial_stdio(capfdbinary, hello_path):
    m = Machine.from_args(["-bios", hello_path])
    m.run()
    assert capfdbinary.readouterr().out == b"hello\n"


def test_second_serial_port(tmp_path, hello_path):
    com2 = tmp_path / "com2"
    m = Machine.from_args(["-bios", hello_path, "-serial", "null", "-serial", f"file:{com2}"])
    assert [u.base for u in m.serials] == [0x3F8, 0x2F8]
    m.close()


def test_unclaimed_ports_read_all_ones(hello_path):
    m = Machine.from_args(["-bios", hello_path, "-serial", "null"])
    assert m.ports.read(0x1234, 1) == 0xFF
    assert m.ports.read(0x1234, 2) == 0xFFFF
    assert m.ports.read(0x1234, 4) == 0xFFFFFFFF


def test_debugcon_absent_without_the_option():
    m = Machine(bios=bios(DEBUGCON), serial=None)
    assert m.debugcon is None
    assert m.run() == "hlt"
    assert m.read_phys(0x500, 1) == b"\xff"


def test_debugcon_to_file(tmp_path):
    log = tmp_path / "debug.log"
    path = tmp_path / "dbg.bin"
    path.write_bytes(bios(DEBUGCON))
    with Machine.from_args(["-bios", str(path), "-debugcon", f"file:{log}"]) as m:
        assert m.run() == "hlt"
        assert m.read_phys(0x500, 1) == b"\xe9"
    assert log.read_bytes() == b"dbg"


def test_post_port_device():
    from pysev.devices.post import PostPort

    seen = []
    post = PostPort(max_history=3, on_write=seen.append)
    assert post.read(0x80) == 0xFF
    for code in (1, 2, 3, 0x104):
        post.write(0x80, 1, code)
    assert post.value == 4 and post.read(0x80) == 4
    assert post.history == [2, 3, 4] and post.writes == 4
    assert seen == [1, 2, 3, 4]


def test_triple_fault_with_no_reboot_stops():
    m = Machine(bios=bios(TRIPLE), serial=None, no_reboot=True)
    assert m.run() == "triple-fault"
    assert m.icount == TRIPLE_INSNS and m.triple_faults == 1 and m.resets == 0
    assert m.state_dict()["stop_reason"] == "triple-fault"


def test_triple_fault_resets_without_no_reboot():
    out = Capture()
    m = Machine(bios=bios(TRIPLE), serial=out)
    assert m.run(max_insns=5 * TRIPLE_INSNS) == "count"
    assert m.triple_faults == m.resets == 5     # the fifth on the last instruction
    assert bytes(out.data) == b"R" * 5
    s = m.state_dict()
    assert s["segments"]["cs"]["selector"] == 0xF000       # running the firmware again


# triple faults on the first boot; after the reset (RAM survives it) takes #UD through the IVT
REBOOT = r"""
    xor ax, ax
    mov ds, ax
    cmp word [0x600], 0x1234
    je .second
    mov word [0x600], 0x1234
    lidt [cs:null_idt]
    int3
.second:
    mov word [6 * 4], handler       ; the handler, through the image's copy below 1 MiB
    mov word [6 * 4 + 2], 0xF000
    ud2
handler:
    mov dx, 0x3f8
    mov al, 'G'
    out dx, al
    cli
    hlt
null_idt: dw 0
          dd 0
"""


def test_reset_after_a_triple_fault_is_a_full_cpu_reset():
    out = Capture()
    m = Machine(bios=bios(REBOOT), serial=out)
    assert m.run(max_insns=1000) == "hlt"
    assert (m.triple_faults, m.resets) == (1, 1)
    assert bytes(out.data) == b"G"


def test_stop_from_a_device():
    # the CPU stops at the end of the translated block: out, inc, jmp
    m = Machine(bios=bios(HELLO), serial=lambda data: m.stop())
    assert m.run() == "stop"
    assert m.icount == 9
    # one instruction at a time, right after the out
    m = Machine(bios=bios(HELLO), serial=lambda data: m.stop(), single_step=True)
    assert m.run() == "stop"
    assert m.icount == 7          # jmp, mov, mov, mov, test, jz, out


# ---- traces ----------------------------------------------------------------------------------

# QEMU 7.2's log of the first instruction of the hello image (-cpu qemu64, -d in_asm,cpu)
QEMU_FIRST_RECORD = """\
----------------
IN: 
0xfffffff0:  e9 0d 00                 jmp      0

EAX=00000000 EBX=00000000 ECX=00000000 EDX=00060fb1
ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000
EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0000 00000000 0000ffff 00009300
CS =f000 ffff0000 0000ffff 00009b00
SS =0000 00000000 0000ffff 00009300
DS =0000 00000000 0000ffff 00009300
FS =0000 00000000 0000ffff 00009300
GS =0000 00000000 0000ffff 00009300
LDT=0000 00000000 0000ffff 00008200
TR =0000 00000000 0000ffff 00008b00
GDT=     00000000 0000ffff
IDT=     00000000 0000ffff
CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 
DR6=00000000ffff0ff0 DR7=0000000000000400
CCS=00000000 CCD=00000000 CCO=EFLAGS
EFER=0000000000000000
"""


def _insn_part(line):
    """An in_asm line without the disassembly text (which differs from QEMU's)."""
    return line[:38] if line.startswith("0x") else line


def test_cpu_and_in_asm_trace_match_qemu():
    log = io.StringIO()
    m = Machine(bios=bios(HELLO), serial=None, cpu="qemu64", log_items=("in_asm", "cpu"), log=log)
    m.run(max_insns=1)
    got = [_insn_part(line) for line in log.getvalue().splitlines()]
    assert got == [_insn_part(line) for line in QEMU_FIRST_RECORD.splitlines()]


def test_cpu_trace_has_one_dump_per_instruction_and_in_asm_once():
    log = io.StringIO()
    m = Machine(bios=bios(HELLO), serial=None, log_items=("in_asm", "cpu"), log=log)
    assert m.run() == "hlt"
    text = log.getvalue()
    assert text.count("\nEFER=") == HELLO_INSNS
    # 13 distinct instructions: the loop body is translated once
    assert text.count("IN: \n") == 13
    assert text.count("0xffff0006:  2e 8a 04 ") == 1


def test_in_asm_without_cpu_logs_blocks():
    log = io.StringIO()
    m = Machine(bios=bios(HELLO), serial=None, log_items=("in_asm",), log=log)
    m.run()
    blocks = log.getvalue().split("----------------\n")[1:]
    assert blocks[0] == "IN: \n0xfffffff0:  e9 0d 00                 jmp      0\n\n"
    assert all(b.startswith("IN: \n0x") and b.endswith("\n\n") for b in blocks)
    assert "EFER=" not in log.getvalue()


def test_log_file_option(tmp_path, hello_path):
    path = tmp_path / "trace.log"
    m = Machine.from_args(["-bios", hello_path, "-serial", "null", "-d", "in_asm",
                           "-D", str(path)])
    m.run()
    m.close()
    assert path.read_text().startswith("----------------\nIN: \n0xfffffff0:  e9 0d 00 ")


def test_mmu_log_has_the_reset_cr0_loads():
    log = io.StringIO()
    Machine(bios=bios(HELLO), serial=None, log_items=("mmu",), log=log)
    assert log.getvalue() == "CR0 update: CR0=0x60000010\n" * 2


PROTECTED_CR0 = r"""
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    hlt
"""


def test_mmu_log_has_guest_cr0_writes():
    """Needs the CPU to call cpu.log_cr(n, value) on control register writes."""
    log = io.StringIO()
    m = Machine(bios=bios(PROTECTED_CR0), serial=None, log_items=("mmu",), log=log)
    m.run()
    assert log.getvalue().splitlines()[2:] == ["CR0 update: CR0=0x60000011"]


def test_int_log_in_real_mode_has_only_check_exception_lines():
    """QEMU prints the numbered v= records only in protected mode."""
    log = io.StringIO()
    m = Machine(bios=bios(TRIPLE), serial=None, no_reboot=True, log_items=("int",), log=log)
    m.run()
    # QEMU: #GP for the int3 beyond the IVT limit, #GP again (a double fault), and the
    # #GP delivering that double fault (a triple fault)
    assert log.getvalue() == ("check_exception old: 0xffffffff new 0xd\n"
                              "check_exception old: 0xd new 0xd\n"
                              "check_exception old: 0x8 new 0xd\n")


PAGE_FAULT_BODY = r"""
body:
    mov rdi, 0x20000 + 14 * 16
    mov rax, handler
    mov [rdi], ax
    mov word [rdi + 2], 0x18
    mov word [rdi + 4], 0x8E00
    shr rax, 16
    mov [rdi + 6], ax
    mov dword [rdi + 8], 0
    mov dword [rdi + 12], 0
    lidt [idt_ptr]
    mov rax, [0x40000000]           ; beyond the identity-mapped first GiB
    hlt
handler:
    cli
    hlt
align 8
idt_ptr:
    dw 256 * 16 - 1
    dq 0x20000
"""


def test_int_log_of_a_page_fault_in_long_mode():
    from sysboot import build

    log = io.StringIO()
    m = Machine(bios=build(PAGE_FAULT_BODY), serial=None, log_items=("int",), log=log)
    assert m.run() == "hlt"
    lines = log.getvalue().splitlines()
    assert lines[0] == "check_exception old: 0xffffffff new 0xe"
    assert lines[1].startswith("     0: v=0e e=0000 i=0 cpl=0 IP=0018:")
    assert lines[1].endswith(" SP=0010:0000000000080000 CR2=0000000040000000")
    assert lines[2].startswith("RAX=") and lines[21].startswith("EFER=")
    assert len(lines) == 22


# a fake CPU in long mode: QEMU's record of a #PF at 0x40000000 (-d int)
def _long_mode_cpu():
    regs = [0] * 16
    regs[0], regs[1], regs[4], regs[7] = 0xF, 0xC0000080, 0x80000, 0x20000
    data = 0x00C09300
    return types.SimpleNamespace(
        regs=regs, rip=0xF013D, eflags=0x6, cpl=0, halted=False, interrupt_shadow=None,
        seg_sel=[0x10, 0x18, 0x10, 0x10, 0, 0],
        seg_base=[0] * 6,
        seg_limit=[0xFFFFFFFF] * 4 + [0xFFFF] * 2,
        seg_attr=[data, 0x00A09A00, data, data, 0x9300, 0x9300],
        ldtr=(0, 0, 0xFFFF, 0x8200), tr=(0, 0, 0xFFFF, 0x8B00),
        gdtr=(0xF00B0, 0x37), idtr=(0x20000, 0xFFF),
        cr0=0xE0000011, cr2=0x40000000, cr3=0x10000, cr4=0x20, efer=0x500,
        dr=[0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400])


QEMU_PF_RECORD = """\
     0: v=0e e=0000 i=0 cpl=0 IP=0018:00000000000f013d pc=00000000000f013d SP=0010:0000000000080000 CR2=0000000040000000
RAX=000000000000000f RBX=0000000000000000 RCX=00000000c0000080 RDX=0000000000000000
RSI=0000000000000000 RDI=0000000000020000 RBP=0000000000000000 RSP=0000000000080000
R8 =0000000000000000 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000
R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000
RIP=00000000000f013d RFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0010 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
CS =0018 0000000000000000 ffffffff 00af9a00 DPL=0 CS64 [-R-]
SS =0010 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
DS =0010 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
FS =0000 0000000000000000 0000ffff 00009300 DPL=0 DS   [-WA]
GS =0000 0000000000000000 0000ffff 00009300 DPL=0 DS   [-WA]
LDT=0000 0000000000000000 0000ffff 00008200 DPL=0 LDT
TR =0000 0000000000000000 0000ffff 00008b00 DPL=0 TSS64-busy
GDT=     00000000000f00b0 00000037
IDT=     0000000000020000 00000fff
CR0=e0000011 CR2=0000000040000000 CR3=0000000000010000 CR4=00000020
DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 
DR6=00000000ffff0ff0 DR7=0000000000000400
CCS=000000000000001e CCD=000000000000000f CCO=SARQ
EFER=0000000000000500
"""


def test_interrupt_record_matches_qemu_in_long_mode():
    text = trace.format_interrupt(_long_mode_cpu(), 0, 14, 0, False)
    expected = QEMU_PF_RECORD.replace(
        "CCS=000000000000001e CCD=000000000000000f CCO=SARQ",
        "CCS=0000000000000004 CCD=0000000000000000 CCO=EFLAGS")     # pysev's lazy flags differ
    assert text == expected


def test_protected_mode_dump_uses_32_bit_names_and_descriptor_kinds():
    cpu = _long_mode_cpu()
    cpu.efer, cpu.cr0, cpu.cr4 = 0, 0x11, 0
    cpu.seg_attr[1] = 0x00C09B00
    cpu.seg_attr[4] = 0x9300                   # a 16-bit data segment
    cpu.tr = (0x28, 0x1000, 0x67, 0x8B00)
    lines = trace.format_cpu_state(cpu).splitlines()
    assert lines[0] == "EAX=0000000f EBX=00000000 ECX=c0000080 EDX=00000000"
    assert lines[2].startswith("EIP=000f013d EFL=00000006 [-----P-] CPL=0 II=0")
    assert lines[4] == "CS =0018 00000000 ffffffff 00cf9b00 DPL=0 CS32 [-RA]"
    assert lines[7] == "FS =0000 00000000 0000ffff 00009300 DPL=0 DS16 [-WA]"
    assert lines[10] == "TR =0028 00001000 00000067 00008b00 DPL=0 TSS32-busy"
    assert lines[11] == "GDT=     000f00b0 00000037"
    assert lines[13] == "CR0=00000011 CR2=40000000 CR3=00010000 CR4=00000000"


def test_long_instructions_continue_on_a_second_line():
    # QEMU: 10 bytes, 8 on the first line
    raw = bytes.fromhex("813df6ffffff813df6ff")
    assert trace.format_insn(0xFFFFF909, raw, "cmpl $0xfff63d81, -0xa(%rip)") == (
        "0xfffff909:  81 3d f6 ff ff ff 81 3d  cmpl     $0xfff63d81, -0xa(%rip)\n"
        "0xfffff911:  f6 ff\n")
    assert trace.format_insn(0xFFFFFEA0, b"\xfa", "cli") == (
        "0xfffffea0:  fa                       cli      \n")


def test_check_exception_and_cr_lines():
    assert trace.format_check_exception(None, 14) == "check_exception old: 0xffffffff new 0xe\n"
    assert trace.format_check_exception(8, 13) == "check_exception old: 0x8 new 0xd\n"
    assert trace.format_cr_update(0, 0x80010033) == "CR0 update: CR0=0x80010033\n"
    assert trace.format_cr_update(3, 0x7801000) == "CR3 update: CR3=0000000007801000\n"
    assert trace.format_cr_update(4, 0x20) is None


def test_tracer_logs_cr3_only_with_paging_on():
    cpu = _long_mode_cpu()
    log = io.StringIO()
    tracer = trace.Tracer(cpu, ("mmu",), log)
    tracer.log_cr(3, 0x10000)
    cpu.cr0 = 0x11
    tracer.log_cr(3, 0x20000)
    tracer.log_cr(0, 0x80000011)
    assert log.getvalue() == ("CR3 update: CR3=0000000000010000\n"
                              "CR0 update: CR0=0x80000011\n")


def test_tracer_interrupt_numbering_and_real_mode():
    cpu = _long_mode_cpu()
    log = io.StringIO()
    tracer = trace.Tracer(cpu, ("int",), log)
    tracer.log_interrupt(14, 0, False)
    tracer.log_interrupt(3, None, True)
    cpu.cr0 = 0x10                              # real mode: no numbered record
    tracer.log_interrupt(13, 0, False)
    lines = log.getvalue().splitlines()
    assert lines[0] == "check_exception old: 0xffffffff new 0xe"
    assert lines[1].startswith("     0: v=0e e=0000 i=0 cpl=0 IP=0018:")
    # a record is its v= line and a 20-line dump; software interrupts have no check line
    assert lines[22].startswith("     1: v=03 e=0000 i=1 cpl=0 IP=0018:")
    assert lines[22].endswith(" env->regs[R_EAX]=000000000000000f")
    assert lines[43:] == ["check_exception old: 0xffffffff new 0xd"]


def test_tracer_with_cpu_exception_hook_prints_check_lines_once():
    cpu = _long_mode_cpu()
    log = io.StringIO()
    tracer = trace.Tracer(cpu, ("int",), log)
    tracer.log_check_exception(None, 13)
    tracer.log_check_exception(13, 13)
    tracer.log_interrupt(8, 0, False)
    lines = log.getvalue().splitlines()
    assert lines[:3] == ["check_exception old: 0xffffffff new 0xd",
                         "check_exception old: 0xd new 0xd",
                         lines[2]]
    assert lines[2].startswith("     0: v=08 e=0000 i=0")
    assert "check_exception" not in "".join(lines[3:])


def test_mmu_walk_line():
    assert trace.format_mmu(0x40000000, 0, error_code=0, detail="not present") == (
        "MMU walk: read lin=0000000040000000 -> #PF err=0000 (not present)\n")
    assert trace.format_mmu(0x1000, "write", 0x5000, entries=(0x11003, 0x12003)) == (
        "MMU walk: write lin=0000000000001000 -> phys=0000000000005000 "
        "[0000000000011003 0000000000012003]\n")


SEVGUEST_BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "pysev", "guests", "sevguest.bin")


@pytest.mark.parametrize("port,owner", [(0x80, "the POST port"), (0x3FC, "COM1"),
                                        (0x2F8, "COM2"), (0x510, "fw_cfg"), (0x51B, "fw_cfg")])
def test_debugcon_port_of_another_device_is_refused(port, owner):
    argv = ["-bios", SEVGUEST_BIN, "-serial", "null", "-serial", "null", "-debugcon", "null",
            "-global", f"isa-debugcon.iobase={port:#x}"]
    with pytest.raises(MachineError) as err:
        Machine.from_args(argv)
    assert str(err.value) == (f"pysev run: -global isa-debugcon.iobase={port:#x}: the port "
                              f"belongs to {owner}")


def test_debugcon_next_to_other_devices_is_fine():
    m = Machine.from_args(["-bios", SEVGUEST_BIN, "-serial", "null", "-debugcon", "null",
                           "-global", "isa-debugcon.iobase=0x51c"])
    assert m.debugcon.base == 0x51C
