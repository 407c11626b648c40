"""pysev.teach.remote: the paging state of a guest read over QMP only (info registers,
xp, query-sev, qom-get), checked against the explanation of the same machine read
directly, in every paging mode, with and without SEV."""

import pytest

from pysev.machine import Machine
from pysev.qmp import QMPError
from pysev.qmp.client import QMPClientError
from pysev.teach.remote import RemoteError, qmp_target
from pysev.teach.walk import explain, format_text

from pagetables import put

BIOS = bytes(0xFF0) + b"\xf4" + bytes(15)          # 4 KiB, HLT at the reset vector
CR0_PE_PG = 0x80000001
CR4_PSE, CR4_PAE, CR4_LA57 = 0x10, 0x20, 0x1000
EFER_LME_LMA_NXE = 0xD00
C51 = 1 << 51


class MachineQMP:
    """The QMPClient interface over a machine in this process (its QMP commands)."""

    def __init__(self, machine):
        self.machine = machine
        self.commands = []

    def execute(self, name, **arguments):
        self.commands.append(name)
        try:
            return self.machine.qmp(name, **arguments)
        except QMPError as exc:
            raise QMPClientError(exc.error_class, exc.desc) from None


def machine(tmp_path, sev):
    objects, enc = [], None
    if sev:
        (tmp_path / "k").write_bytes(bytes(16))
        objects = [("sev-emulated", "sev0", {"tik": str(tmp_path / "k"),
                                            "tek": str(tmp_path / "k")})]
        enc = "sev0"
    return Machine(bios=BIOS, memory=16 << 20, serial="null", objects=objects,
                   memory_encryption=enc)


def set_paging(m, cr3, cr4, efer=0):
    cpu = m.cpu
    cpu.cr0, cpu.cr3, cpu.cr4, cpu.efer = CR0_PE_PG, cr3, cr4, efer
    cpu.update_paging()


def build(m, mode, c):
    """Tables mapping VA 0x00403123 (and, 5-level, a high VA) in *mode*; returns the VA."""
    mem = m.mem
    if mode == "32-bit":
        put(mem, 0x10000, 1, 0x11000 | 0x7, 4)
        put(mem, 0x11000, 3, 0x55000 | 0x3, 4)
        set_paging(m, 0x10000, CR4_PSE)
        return 0x00403123
    if mode == "PAE":
        put(mem, 0x10000, 0, 0x11000 | 0x1 | c)
        put(mem, 0x11000, 2, 0x12000 | 0x3 | c)
        put(mem, 0x12000, 3, 0x55000 | 0x3 | c)
        set_paging(m, 0x10000, CR4_PAE)
        return 0x00403123
    va = 0x00403123
    top = 0x10000
    if mode == "5-level":
        put(mem, 0x10000, 0, 0x0F000 | 0x3 | c)
        top = 0x0F000
    put(mem, top, 0, 0x11000 | 0x3 | c)
    put(mem, 0x11000, 0, 0x12000 | 0x3 | c)
    put(mem, 0x12000, 2, 0x13000 | 0x3 | c)
    put(mem, 0x13000, 3, 0x55000 | 0x3 | c | (1 << 63))
    set_paging(m, 0x10000 | c, CR4_PAE | (CR4_LA57 if mode == "5-level" else 0),
               EFER_LME_LMA_NXE)
    return va


@pytest.mark.parametrize("sev", [False, True])
@pytest.mark.parametrize("mode", ["32-bit", "PAE", "4-level", "5-level"])
def test_remote_explanation_equals_the_local_one(tmp_path, mode, sev):
    m = machine(tmp_path, sev)
    c = C51 if sev else 0
    va = build(m, mode, c)
    local = explain(m.mem, m.cpu.cr3, va, m.cpu.paging)
    qmp = MachineQMP(m)
    target = qmp_target(qmp)
    remote = explain(target.mem, target.cr3, va, target.paging)
    assert format_text(remote) == format_text(local)
    assert remote.physical == 0x55123 and remote.ok
    assert remote.private == (sev and mode != "32-bit")
    assert target.phys_bits == m.cpu.phys_bits == 48
    assert target.sev == ({"cbitpos": 51, "reduced-phys-bits": 1} if sev else None)
    assert target.mem.reads == len(local.levels)
    assert set(qmp.commands) <= {"human-monitor-command", "query-cpus-fast", "qom-get",
                                 "query-sev"}


def test_remote_fault_verdict_equals_the_local_one(tmp_path):
    m = machine(tmp_path, True)
    build(m, "4-level", C51)
    put(m.mem, 0x12000, 2, 0x13000 | 0x3 | C51 | (1 << 47))    # reserved under SEV
    local = explain(m.mem, m.cpu.cr3, 0x403123, m.cpu.paging, access="write", user=True)
    target = qmp_target(MachineQMP(m))
    remote = explain(target.mem, target.cr3, 0x403123, target.paging, access="write",
                     user=True)
    assert format_text(remote) == format_text(local)
    assert remote.fault == "#PF" and remote.error_code == 0xF


class Scripted:
    """A monitor that answers from a table, as an unusual QEMU might."""

    def __init__(self, answers):
        self.answers = answers

    def execute(self, name, **arguments):
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer(arguments) if callable(answer) else answer


def test_qemu_without_sev_or_phys_bits_property():
    regs = "CR0=80000011 CR2=00000000 CR3=00010000 CR4=00000010\nEFER=0000000000000000\n"
    qmp = Scripted({
        "human-monitor-command": lambda a: regs if a["command-line"] == "info registers"
        else "0000000000010004: 0x00011007\n",
        "query-cpus-fast": [{"qom-path": "/machine/unattached/device[0]"}],
        "qom-get": QMPClientError("GenericError", "Property 'x.phys-bits' not found"),
        "query-sev": QMPClientError("GenericError", "SEV feature is not available"),
    })
    target = qmp_target(qmp)
    assert target.sev is None and target.phys_bits == 40
    assert target.paging.levels == 2 and target.cr3 == 0x10000
    assert target.mem.read(0x10004, 4) == 0x11007


def test_missing_registers_and_unreadable_memory_are_clear_errors():
    qmp = Scripted({"human-monitor-command": lambda a: "CR0=80000011 CR3=0\n"})
    with pytest.raises(RemoteError) as err:
        qmp_target(qmp)
    assert str(err.value) == "info registers did not show CR4, EFER"
    regs = "RIP=0 CR0=80000011 CR3=00010000 CR4=00000010 EFER=0\n"
    qmp = Scripted({
        "human-monitor-command": lambda a: regs if a["command-line"] == "info registers"
        else "Cannot access memory\n",
        "query-cpus-fast": [], "query-sev": {"enabled": False}})
    target = qmp_target(qmp)
    with pytest.raises(RemoteError) as err:
        target.mem.read(0x10004, 4)
    assert str(err.value) == "xp at 0x10004 gave no value: 'Cannot access memory'"
