"""Machine snapshots (pysev.snapshot): save, load, and run on exactly as without them.

The reference for "identically" is always the same machine run without a
snapshot: the CPU state (state_dict), every byte of RAM and ROM, the serial
output and the device state must be equal after the same number of
instructions.
"""

import base64
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from pysev.machine import Machine, parse_args
from pysev.qmp.client import QMPClient
from pysev.snapshot import SnapshotError, describe, memory_digest
from pysev.sev import firmware

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEVGUEST = os.path.join(ROOT, "pysev", "guests", "sevguest.bin")
OVMF = "/usr/share/ovmf/OVMF.fd"
TIK = bytes.fromhex("5a17c0de" * 4)
TEK = bytes.fromhex("7e4b00b5" * 4)
SEVGUEST_INSNS = 25_172          # sevguest halts after this many without a secret


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    (d / "tik.bin").write_bytes(TIK)
    (d / "tek.bin").write_bytes(TEK)
    return str(d / "tik.bin"), str(d / "tek.bin")


def sev_machine(keys, paused=False, extra=()):
    out = bytearray()
    kwargs = parse_args(["-bios", SEVGUEST, "-no-reboot", "-seed", "7",
                         "-object", f"sev-emulated,id=sev0,tik={keys[0]},tek={keys[1]}",
                         "-machine", "q35,memory-encryption=sev0", *extra]).machine_kwargs()
    kwargs["serial"] = [out.extend]
    return Machine(**kwargs), out


def secret_packet(machine, table):
    blob = base64.b64decode(machine.qmp("query-sev-launch-measure")["data"])
    iv = bytes(16)
    trans = firmware.aes_ctr(TEK, iv, table)
    mac = firmware.secret_mac(TIK, 0, iv, len(table), trans, blob[:32])
    return {"packet-header": base64.b64encode(struct.pack("<I", 0) + iv + mac).decode(),
            "secret": base64.b64encode(trans).decode(), "gpa": 0x800000}


def efi_secret_table(text):
    guid_hdr = bytes.fromhex("42f5741edd71664d963eef4287ff173b")
    entry_guid = bytes(16)
    data = text.encode()
    entry = entry_guid + struct.pack("<I", 20 + len(data)) + data
    return guid_hdr + struct.pack("<I", 20 + len(entry)) + entry


def assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    sa.pop("stop_reason"), sb.pop("stop_reason")     # how a run ended is not machine state
    assert sa == sb
    assert memory_digest(a.mem) == memory_digest(b.mem)


# ---------------------------------------------------------------------------- identical runs

def test_ovmf_runs_on_identically_after_a_snapshot(tmp_path):
    n, m = 40_000, 30_000             # into 64-bit SEC code, past the page-table build
    ref = Machine(bios=OVMF, serial="null")
    ref.run(max_insns=n + m)
    first = Machine(bios=OVMF, serial="null")
    first.run(max_insns=n)
    path = tmp_path / "ovmf.pysev"
    info = first.save_snapshot(path)
    assert info["icount"] == n
    second = Machine.load_snapshot(path, serial="null")
    assert_same(first, second)
    assert second.icount == n and second.bios_path == OVMF
    assert second.run(max_insns=m) == "count"
    assert_same(ref, second)
    assert second.post.history == ref.post.history


def test_sev_guest_snapshot_mid_run_continues_with_the_same_output(tmp_path, keys):
    ref, ref_out = sev_machine(keys)
    assert ref.run(max_insns=100_000) == "hlt"
    first, first_out = sev_machine(keys)
    first.run(max_insns=12_000)       # in protected mode, SEV detected, before long mode
    path = tmp_path / "sev.pysev"
    first.save_snapshot(path)
    out = bytearray()
    second = Machine.load_snapshot(path, serial=[out.extend])
    assert second.query_sev()["state"] == "running"
    assert second.cpu.sev_c_bit == 51 and second.cpu.sev_reduced_bits == 1
    assert second.run(max_insns=100_000) == "hlt"
    assert bytes(first_out + out) == bytes(ref_out)
    assert b"C-bit page tables verified" in out
    assert_same(ref, second)
    assert second.icount == SEVGUEST_INSNS


def test_snapshot_keeps_uart_and_fw_cfg_state(tmp_path):
    bios = bytes(0xFF0) + b"\xf4" + bytes(15)         # 4 KiB: HLT at the reset vector
    m = Machine(bios=bios, serial="null")
    m.ports.write(0x3FB, 1, 0x83)             # DLAB on, 8N1
    m.ports.write(0x3F8, 1, 0x0C)             # divisor 12: 9600 baud
    m.ports.write(0x3FB, 1, 0x03)
    m.ports.write(0x3FF, 1, 0x5A)             # scratch
    m.serial.feed(b"hi")
    m.ports.write(0x510, 2, 0x0000)           # fw_cfg: select the signature, read two bytes
    assert bytes(m.ports.read(0x511, 1) for _ in range(2)) == b"QE"
    m.ports.write(0x80, 1, 0x42)
    path = tmp_path / "dev.pysev"
    m.save_snapshot(path)
    r = Machine.load_snapshot(path, serial="null")
    assert r.serial.divisor == 12 and r.serial.lcr == 0x03
    assert r.ports.read(0x3FF, 1) == 0x5A
    assert bytes(r.ports.read(0x3F8, 1) for _ in range(2)) == b"hi"
    assert bytes(r.ports.read(0x511, 1) for _ in range(2)) == b"MU"
    assert r.post.value == 0x42 and r.post.history == [0x42]


# ---------------------------------------------------------------------------- SEV and keys

def test_snapshot_holds_no_key_material(tmp_path, keys):
    m, _ = sev_machine(keys)
    path = tmp_path / "launch.pysev"
    m.save_snapshot(path)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            data = z.read(name)
            assert TIK not in data and TEK not in data, name
            assert keys[0].encode() not in data and keys[1].encode() not in data, name
        state = json.loads(z.read("snapshot.json"))
    assert state["config"]["objects"] == [["sev-emulated", "sev0", {}]]
    assert "tik" not in json.dumps(state) and "tek" not in json.dumps(state)


def test_launch_secret_state_is_restored_but_secrets_need_the_keys(tmp_path, keys):
    m, _ = sev_machine(keys)
    measure = m.qmp("query-sev-launch-measure")
    path = tmp_path / "launch.pysev"
    m.save_snapshot(path)
    out = bytearray()
    r = Machine.load_snapshot(path, serial=[out.extend])
    assert r.qmp("query-sev") == m.qmp("query-sev")
    assert r.qmp("query-sev")["state"] == "launch-secret"
    assert r.qmp("query-sev-launch-measure") == measure
    from pysev.qmp import QMPError
    with pytest.raises(QMPError) as err:
        r.qmp("sev-inject-launch-secret", **secret_packet(m, efi_secret_table("x")))
    assert err.value.desc == ("SEV: failed to inject secret: SEV firmware error 0x2 (Guest "
                              "state is invalid): the guest's "
                              "transport keys are not here (it was restored from a snapshot, "
                              "which holds none)")
    assert r.read_phys(0x800000, 16) == bytes(16)
    assert r.run(max_insns=100_000) == "hlt"          # LAUNCH_FINISH needs no keys
    assert r.query_sev()["state"] == "running"
    assert b"no secret injected" in out


def test_a_secret_injected_before_the_snapshot_is_in_it(tmp_path, keys):
    m, _ = sev_machine(keys)
    m.qmp("sev-inject-launch-secret", **secret_packet(m, efi_secret_table("lesson secret")))
    path = tmp_path / "secret.pysev"
    m.save_snapshot(path)
    out = bytearray()
    r = Machine.load_snapshot(path, serial=[out.extend])
    assert r.run(max_insns=100_000) == "hlt"
    assert b"secret: lesson secret" in out


# ---------------------------------------------------------------------------- bad files

def test_bad_snapshot_files_are_clear_errors(tmp_path):
    missing = tmp_path / "missing.pysev"
    with pytest.raises(SnapshotError, match=r"^cannot read '.*missing.pysev': No such file"):
        Machine.load_snapshot(missing)
    text = tmp_path / "text.pysev"
    text.write_text("hello")
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(text)
    assert str(err.value) == f"'{text}' is not a pysev snapshot (not a zip archive)"
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(other)
    assert str(err.value) == f"'{other}' is not a pysev snapshot (no snapshot.json)"


def _rewrite(src, dst, change=None, drop=()):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == "snapshot.json" and change:
                state = json.loads(data)
                change(state)
                data = json.dumps(state)
            zout.writestr(name, data)


def test_damaged_and_future_snapshots_are_refused(tmp_path):
    m = Machine(bios=SEVGUEST, serial="null")
    good = tmp_path / "good.pysev"
    m.save_snapshot(good)
    newer = tmp_path / "newer.pysev"
    _rewrite(good, newer, change=lambda s: s.update(version=2))
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(newer)
    assert str(err.value) == f"'{newer}' is a version 2 snapshot; this pysev reads version 1"
    nomem = tmp_path / "nomem.pysev"
    _rewrite(good, nomem, drop=("memory.bin",))
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(nomem)
    assert str(err.value) == f"'{nomem}' is damaged: memory.bin is missing"
    nocpu = tmp_path / "nocpu.pysev"
    _rewrite(good, nocpu, change=lambda s: s.pop("cpu"))
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(nocpu)
    assert str(err.value) == f"'{nocpu}' is damaged: bad or missing 'cpu'"


def test_unwritable_snapshot_path_is_a_clear_error(tmp_path):
    m = Machine(bios=SEVGUEST, serial="null")
    with pytest.raises(SnapshotError) as err:
        m.save_snapshot(tmp_path / "no" / "such" / "dir.pysev")
    assert str(err.value).startswith("cannot write '") and "No such file or directory" in str(err.value)


def test_describe_names_the_state_without_keys(tmp_path, keys):
    m, _ = sev_machine(keys)
    m.run(max_insns=100_000)
    path = tmp_path / "d.pysev"
    m.save_snapshot(path)
    lines = describe(path).splitlines()
    assert lines[1] == "machine q35, 128 MiB, CPU EPYC-Milan, firmware 65536 bytes"
    assert lines[2] == (f"after {SEVGUEST_INSNS} instructions, run state running, RIP "
                        f"{m.cpu.rip:#x}, CR3 {m.cpu.cr3:#x}")
    assert lines[3] == ("SEV: state running, policy 0x1, C-bit 51, reduced-phys-bits 1 "
                        "(no keys saved)")


# ---------------------------------------------------------------------------- command line

def pysev(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pysev", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_cli_save_then_load_gives_the_whole_output(tmp_path, keys):
    snap = str(tmp_path / "cli.pysev")
    sev = ["-machine", "q35,memory-encryption=sev0",
           "-object", f"sev-emulated,id=sev0,tik={keys[0]},tek={keys[1]}"]
    first = pysev("run", "-bios", SEVGUEST, *sev, "--max-insns", "12000", "--save-snapshot", snap)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "sevguest: protected mode\nSEV: active, C-bit 51, reduced-phys-bits 1\n"
    second = pysev("run", "--load-snapshot", snap)
    assert second.returncode == 0, second.stderr
    assert second.stdout == ("sevguest: long mode\nC-bit page tables verified\n"
                             "no secret injected\nsevguest: halt\n")
    assert second.stderr == f"pysev: stopped after {SEVGUEST_INSNS} instructions (hlt)\n"


def test_cli_load_refuses_machine_options(tmp_path):
    snap = str(tmp_path / "x.pysev")
    Machine(bios=SEVGUEST, serial="null").save_snapshot(snap)
    r = pysev("run", "--load-snapshot", snap, "-m", "64M", "-cpu", "EPYC")
    assert r.returncode == 2
    assert r.stderr == ("pysev run: --load-snapshot: -m, -cpu cannot be given: the machine's "
                        "configuration comes from the snapshot\n")
    r = pysev("run", "--load-snapshot", str(tmp_path / "none.pysev"))
    assert r.returncode == 2
    assert r.stderr == (f"pysev run: --load-snapshot: cannot read '{tmp_path / 'none.pysev'}': "
                        "No such file or directory\n")
    r = pysev("run", "-bios", SEVGUEST, "--save-snapshot", str(tmp_path / "no" / "x.pysev"))
    assert r.returncode == 2
    assert r.stderr == (f"pysev run: --save-snapshot: cannot write "
                        f"'{tmp_path / 'no' / 'x.pysev'}': No such file or directory\n")


# ---------------------------------------------------------------------------- QMP migrate

def test_qmp_migrate_to_a_file_saves_and_stops(tmp_path, keys):
    sock = str(tmp_path / "m.sock")
    m, out = sev_machine(keys, extra=("-qmp", f"unix:{sock},server=on,wait=off"))
    runner = threading.Thread(target=m.run, daemon=True)
    runner.start()
    snap = str(tmp_path / "mig.pysev")
    try:
        with QMPClient(sock) as q:
            deadline = time.monotonic() + 30
            while not m.halted and time.monotonic() < deadline:
                time.sleep(0.05)
            assert q.execute("query-migrate") == {}
            with pytest.raises(Exception) as err:
                q.execute("migrate", uri="tcp:localhost:4444")
            assert err.value.desc == ("Parameter 'uri' expects a valid migration protocol "
                                      "(pysev supports file:PATH)")
            assert q.execute("migrate", uri=f"file:{snap}") == {}
            assert q.execute("query-migrate")["status"] == "completed"
            assert q.execute("query-status")["status"] == "postmigrate"
            assert [e["event"] for e in q.take_events()] == ["STOP"]
            q.execute("cont")
            assert q.execute("query-status")["status"] == "running"
            q.execute("stop")                       # from paused too, as QEMU's source:
            assert q.execute("migrate", uri=f"file:{snap}") == {}
            assert q.execute("query-status")["status"] == "postmigrate"
            assert [e["event"] for e in q.take_events()] == ["RESUME", "STOP"]
            q.execute("quit")
    finally:
        runner.join(30)
        m.close()
    r = Machine.load_snapshot(snap, serial="null")
    assert r.icount == SEVGUEST_INSNS
    assert_same(m, r)


# ---------------------------------------------------------------------------- pysev walk

def test_walk_from_a_snapshot_matches_walk_from_the_running_machine(tmp_path, keys):
    m, _ = sev_machine(keys)
    m.run(max_insns=100_000)
    snap = str(tmp_path / "w.pysev")
    m.save_snapshot(snap)
    r = pysev("walk", "0x800000", "--snapshot", snap)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (f"pysev walk: snapshot {snap}, after {SEVGUEST_INSNS} instructions, "
                        f"RIP {m.cpu.rip:#x}")
    assert lines[1] == "4-level paging, CR3 0x8000000020000, VA 0x800000 (read, supervisor)"
    assert lines[-1] == "-> physical 0x800000 (private)"
    r2 = pysev("walk", "0x800000", "--bios", SEVGUEST, "--max-insns", "100000",
               "-machine", "q35,memory-encryption=sev0",
               "-object", f"sev-emulated,id=sev0,tik={keys[0]},tek={keys[1]}")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.splitlines()[1:] == lines[1:]


def test_walk_option_errors():
    r = pysev("walk", "0x1000", "--snapshot", "x.pysev", "-m", "64M")
    assert r.returncode == 2
    assert r.stderr == ("pysev: walk: machine options (-object, -machine, -m, -cpu, -serial, "
                        "-global) go with --bios; a snapshot or a QMP guest brings its own\n")
    r = pysev("walk", "0x1000", "--bios", SEVGUEST)
    assert r.stderr == "pysev: walk: --bios needs --max-insns N (how far to run the firmware)\n"
    r = pysev("walk", "0x1000", "--qmp", "/nonexistent/sock")
    assert r.returncode == 2
    assert r.stderr == ("pysev: walk: --qmp: cannot connect to '/nonexistent/sock': "
                        "No such file or directory\n")


def test_walk_over_qmp_of_a_pysev_guest(tmp_path, keys):
    sock = str(tmp_path / "w.sock")
    m, _ = sev_machine(keys, extra=("-qmp", f"unix:{sock},server=on,wait=off"))
    runner = threading.Thread(target=m.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not m.halted and time.monotonic() < deadline:
            time.sleep(0.05)
        r = pysev("walk", "0x800000", "--qmp", f"unix:{sock},server=on", "--svg",
                  str(tmp_path / "w.svg"))
        assert r.returncode == 0, r.stderr
        local = pysev("walk", "0x800000", "--bios", SEVGUEST, "--max-insns", "100000",
                      "-machine", "q35,memory-encryption=sev0",
                      "-object", f"sev-emulated,id=sev0,tik={keys[0]},tek={keys[1]}")
        assert r.stdout.splitlines()[0] == f"pysev walk: the guest behind {sock}, RIP {m.cpu.rip:#x}"
        assert r.stdout.splitlines()[1:] == local.stdout.splitlines()[1:]
        assert "C-bit set (private)" in r.stdout
        assert (tmp_path / "w.svg").read_text().startswith("<svg")
    finally:
        with QMPClient(sock) as q:
            q.execute("quit")
        runner.join(30)
        m.close()


def test_walk_over_qmp_of_a_live_qemu(tmp_path):
    """The same explainer against QEMU's own monitor: OVMF's identity map of the flash."""
    sock = str(tmp_path / "qemu.sock")
    qemu = subprocess.Popen(["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu",
                             "qemu64", "-bios", OVMF, "-display", "none", "-serial", "null",
                             "-no-reboot", "-S", "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        with QMPClient(sock) as q:
            q.execute("cont")
            # wait until OVMF is in long mode on its own page tables (CR3 0x800000)
            while time.monotonic() < deadline:
                regs = q.execute("human-monitor-command", **{"command-line": "info registers"})
                if "CR3=0000000000800000" in regs and "EFER=0000000000000500" in regs:
                    break
                time.sleep(0.02)
            q.execute("stop")
        r = pysev("walk", "0xfffff000", "--qmp", sock)     # QEMU serves one client at a time
        with QMPClient(sock) as q:
            q.execute("quit")
    finally:
        qemu.wait(30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [
        "4-level paging, CR3 0x800000, VA 0xfffff000 (read, supervisor)",
        "PML4: table 0x800000 index 0 -> entry at 0x800000 = 0x0000000000801023",
        "    P=1 RW=1 US=0 PWT=0 PCD=0 A=1 D=0 PS=0 G=0 NX=0",
        "    next table 0x801000",
        "PDPT: table 0x801000 index 3 -> entry at 0x801018 = 0x0000000000805023",
        "    P=1 RW=1 US=0 PWT=0 PCD=0 A=1 D=0 PS=0 G=0 NX=0",
        "    next table 0x805000",
        "PD: table 0x805000 index 511 -> entry at 0x805ff8 = 0x00000000ffe000e3",
        "    P=1 RW=1 US=0 PWT=0 PCD=0 A=1 D=1 PS=1 G=0 NX=0",
        "    page frame 0xffe00000 (2 MiB page)",
        "-> physical 0xfffff000 (no SEV: not encrypted)",
    ]


def test_cli_snapshot_info(tmp_path, keys):
    m, _ = sev_machine(keys)
    m.run(max_insns=100_000)
    snap = tmp_path / "i.pysev"
    m.save_snapshot(snap)
    r = pysev("snapshot", "info", str(snap))
    assert r.returncode == 0, r.stderr
    assert r.stdout == describe(snap) + "\n"
    assert r.stdout.splitlines()[3] == ("SEV: state running, policy 0x1, C-bit 51, "
                                        "reduced-phys-bits 1 (no keys saved)")
    bad = tmp_path / "bad.pysev"
    bad.write_text("x")
    r = pysev("snapshot", "info", str(bad))
    assert r.returncode == 1
    assert r.stderr == f"pysev: snapshot: '{bad}' is not a pysev snapshot (not a zip archive)\n"
