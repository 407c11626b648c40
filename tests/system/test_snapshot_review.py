"""Snapshots at odd moments and from odd files: review findings, each a regression test.

A loaded snapshot must never hang the run, a damaged snapshot.json must be a
one-line error before any of it reaches the machine, and a snapshot file must
never be lost: not by the option checks of ``pysev run``, nor by a save that
fails half-way.
"""

import json
import os
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from pysev.machine import Machine
from pysev.qmp.client import QMPClient
from pysev.snapshot import SnapshotError, describe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEVGUEST = os.path.join(ROOT, "pysev", "guests", "sevguest.bin")
HALT_INSNS = 24_753              # sevguest without SEV halts after this many


def pysev(*args):
    return subprocess.run([sys.executable, "-m", "pysev", *args], capture_output=True,
                          text=True, timeout=120)


def run_with_timeout(machine, max_insns, timeout=60):
    """machine.run(max_insns) in a thread; None if it did not return in time."""
    box = []
    t = threading.Thread(target=lambda: box.append(machine.run(max_insns=max_insns)),
                         daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else None


def halted_snapshot(tmp_path):
    """A snapshot taken over QMP (migrate) of a guest halted in HLT: the machine served
    QMP, so it was waiting, halted, when it was saved."""
    sock = str(tmp_path / "h.sock")
    m = Machine(bios=SEVGUEST, serial="null", qmp=sock)
    runner = threading.Thread(target=m.run, daemon=True)
    runner.start()
    path = str(tmp_path / "halted.pysev")
    with QMPClient(sock, timeout=30) as q:
        deadline = time.monotonic() + 60
        while not m.halted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.halted
        assert q.execute("migrate", uri=f"file:{path}") == {}
        q.execute("quit")
    runner.join(30)
    m.close()
    return path


def test_a_halted_guest_saved_over_qmp_runs_on_without_a_monitor(tmp_path):
    path = halted_snapshot(tmp_path)
    r = Machine.load_snapshot(path, serial="null")
    assert r.halted is False and r.icount == HALT_INSNS
    # it used to wait forever for a QMP command that no monitor could send
    assert run_with_timeout(r, 100) == "hlt"
    r.close()
    served = Machine.load_snapshot(path, serial="null", qmp=str(tmp_path / "again.sock"))
    assert served.halted is True                # with a monitor it waits, as it did
    served.close()


def test_a_snapshot_saved_after_quit_ends_at_once_without_a_monitor(tmp_path):
    m = Machine(bios=SEVGUEST, serial="null")
    m.run(max_insns=1000)
    m.qmp("quit")
    path = tmp_path / "quit.pysev"
    m.save_snapshot(path)
    r = Machine.load_snapshot(path, serial="null")
    assert r.run_state == "shutdown"
    assert run_with_timeout(r, 100) == "quit"    # used to hang
    assert r.icount == 1000
    r.close()
    res = pysev("run", "--load-snapshot", str(path), "-serial", "null")
    assert res.returncode == 0
    assert res.stderr == "pysev: stopped after 1000 instructions (quit)\n"


def test_save_snapshot_to_the_loaded_file_keeps_it(tmp_path):
    path = str(tmp_path / "lesson.pysev")
    Machine(bios=SEVGUEST, serial="null").save_snapshot(path)
    # the check that --save-snapshot can be written used to truncate the file first
    res = pysev("run", "--load-snapshot", path, "--save-snapshot", path, "--max-insns", "10",
                "-serial", "null")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "pysev: stopped after 10 instructions (count)\n"
    assert Machine.load_snapshot(path, serial="null").icount == 10
    res = pysev("run", "--load-snapshot", path, "--state-json", path, "--max-insns", "5",
                "-serial", "null")
    assert res.returncode == 0, res.stderr
    assert json.loads(open(path).read())["icount"] == 15


def test_save_snapshot_to_a_directory_is_refused_before_the_run(tmp_path):
    res = pysev("run", "-bios", SEVGUEST, "--save-snapshot", str(tmp_path), "--max-insns", "10")
    assert res.returncode == 2
    assert res.stderr == f"pysev run: --save-snapshot: cannot write '{tmp_path}': Is a directory\n"


def test_a_failed_save_leaves_the_older_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "old.pysev"
    m = Machine(bios=SEVGUEST, serial="null")
    m.save_snapshot(path)
    before = path.read_bytes()
    m.run(max_insns=100)
    real = zipfile.ZipFile.writestr

    def disk_full(self, name, data, *args, **kwargs):
        if name == "memory.bin":
            raise OSError(28, "No space left on device")
        return real(self, name, data, *args, **kwargs)
    monkeypatch.setattr(zipfile.ZipFile, "writestr", disk_full)
    with pytest.raises(SnapshotError) as err:
        m.save_snapshot(path)
    assert str(err.value) == f"cannot write '{path}': No space left on device"
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["old.pysev"]     # no temporary file left


def test_seed_with_load_snapshot_is_refused(tmp_path):
    path = str(tmp_path / "s.pysev")
    Machine(bios=SEVGUEST, serial="null", seed=1).save_snapshot(path)
    res = pysev("run", "--load-snapshot", path, "-seed", "5")
    assert res.returncode == 2
    assert res.stderr == ("pysev run: --load-snapshot: -seed cannot be given: the machine's "
                          "configuration comes from the snapshot\n")


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "snapshot.json":
                state = json.loads(data)
                change(state)
                data = json.dumps(state)
            zout.writestr(name, data)


def _set(*path_value):
    *path, value = path_value

    def change(state):
        d = state
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return change


# each of these loaded without complaint and broke the machine later (or described with a
# traceback)
BAD_VALUES = [
    (_set("cpu", "rip", "0x1000"), "cpu.rip is not a 64-bit unsigned integer"),
    (_set("cpu", "rip", -1), "cpu.rip is not a 64-bit unsigned integer"),
    (_set("cpu", "regs", [0]), "cpu.regs is not a list of 16 64-bit unsigned integers"),
    (_set("cpu", "mode", [99, 8, True, 0, True, False]),
     "cpu.mode is not [bits, stack size, long, cpl, pe, segcheck]"),
    (_set("cpu", "cpl", 7), "cpu.cpl is not an integer in 0..3"),
    (_set("cpu", "gdtr", [1]), "cpu.gdtr is not a list of 2 64-bit unsigned integers"),
    (_set("cpu", "icount", "many"), "cpu.icount is not a 64-bit unsigned integer"),
    (_set("run", "state", "bogus"), "run.state is not a run state (prelaunch, running, "
     "paused, postmigrate, shutdown, internal-error, guest-panicked)"),
    (_set("run", "halted", "yes"), "run.halted is not true or false"),
    (_set("config", "memory", "128M"), "config.memory is not an integer in "
     "0..4503599627370495"),
    (_set("config", "serial_ports", [0x3F8, 0x3F8]),
     "config.serial_ports is not a list of COM port addresses in order"),
    (_set("config", None), "config is not an object"),
    (_set("devices", "serial", [{"ier": 0}]), "bad or missing 'devices.serial[0].lcr'"),
    (_set("version", "1"), None),
]


@pytest.mark.parametrize("change, message", BAD_VALUES)
def test_wrong_types_in_snapshot_json_are_one_line_errors(tmp_path, change, message):
    good = tmp_path / "good.pysev"
    Machine(bios=SEVGUEST, serial="null").save_snapshot(good)
    bad = tmp_path / "bad.pysev"
    _rewrite(good, bad, change)
    if message is None:
        message = 'its version is "1", not a number'
    for load in (lambda p: Machine.load_snapshot(p, serial="null"), describe):
        with pytest.raises(SnapshotError) as err:
            load(bad)
        assert str(err.value) == f"'{bad}' is damaged: {message}"


def test_machine_errors_from_a_snapshot_do_not_say_pysev_run(tmp_path):
    good = tmp_path / "good.pysev"
    Machine(bios=SEVGUEST, serial="null").save_snapshot(good)
    bad = tmp_path / "bad.pysev"
    _rewrite(good, bad, _set("config", "cpu", "nope"))
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(bad, serial="null")
    assert str(err.value) == f"'{bad}': -cpu: unknown CPU model 'nope' (try -cpu help)"


def test_a_cut_page_list_is_a_clear_error(tmp_path):
    good = tmp_path / "good.pysev"
    Machine(bios=SEVGUEST, serial="null").save_snapshot(good)
    bad = tmp_path / "bad.pysev"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, data[:-1] if name == "memory.pages" else data)
    with pytest.raises(SnapshotError) as err:
        Machine.load_snapshot(bad, serial="null")
    assert str(err.value) == f"'{bad}' is damaged: memory: the page list is cut short"


def test_save_load_save_is_identical_with_every_device(tmp_path):
    m = Machine(bios=SEVGUEST, serial=["null", "none", "null", "null"], debugcon="null",
                debugcon_port=0x500, seed=9)
    m.run(max_insns=5000)
    a, b = tmp_path / "a.pysev", tmp_path / "b.pysev"
    m.save_snapshot(a)
    r = Machine.load_snapshot(a, serial="null")
    r.save_snapshot(b)
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            assert za.read(name) == zb.read(name), name
        assert json.loads(za.read("snapshot.json"))["config"]["serial_ports"] == \
            [0x3F8, 0x3E8, 0x2E8]


def test_migrate_that_fails_unexpectedly_is_reported_failed(tmp_path, monkeypatch):
    import pysev.snapshot as snapshot
    m = Machine(bios=SEVGUEST, serial="null")

    def boom(machine, path):
        raise MemoryError("out of memory")
    monkeypatch.setattr(snapshot, "save", boom)
    with pytest.raises(MemoryError):
        m.qmp("migrate", uri=f"file:{tmp_path / 'm.pysev'}")
    # it used to stay "active" for ever
    assert m.qmp("query-migrate") == {"status": "failed",
                                      "error-desc": "internal error: out of memory"}


def test_the_serial_options_of_the_saving_run_fit_its_snapshot(tmp_path):
    snap = str(tmp_path / "gap.pysev")
    com3, again = tmp_path / "com3.txt", tmp_path / "again.txt"
    res = pysev("run", "-bios", SEVGUEST, "-serial", "null", "-serial", "none",
                "-serial", f"file:{com3}", "--max-insns", "100", "--save-snapshot", snap)
    assert res.returncode == 0, res.stderr
    # the same -serial options used to fail: "is damaged: serial: the number of ports ..."
    res = pysev("run", "--load-snapshot", snap, "-serial", "null", "-serial", "none",
                "-serial", f"file:{again}", "--max-insns", "100")
    assert res.returncode == 0, res.stderr
    # and a second -serial used to go to COM3, the second saved port, not to COM2
    res = pysev("run", "--load-snapshot", snap, "-serial", "null", "-serial",
                f"file:{again}", "--max-insns", "100")
    assert res.returncode == 2
    assert res.stderr == (f"pysev run: --load-snapshot: '{snap}': -serial: the saved machine "
                          "has no COM2 (its serial ports: COM1, COM3)\n")
    res = pysev("run", "--load-snapshot", snap, "-serial", "none")
    assert res.returncode == 2
    assert res.stderr == (f"pysev run: --load-snapshot: '{snap}': -serial: COM1 is part of "
                          "the saved machine and cannot be left out (null discards its "
                          "output)\n")
    m = Machine.load_snapshot(snap, serial=["null", "none", "null"])
    assert [u.base for u in m.serials] == [0x3F8, 0x3E8]


def test_a_triple_faulted_machine_says_why_it_cannot_be_saved(tmp_path):
    bios = bytearray(4096)
    bios[0xFF0:0xFF6] = bytes.fromhex("0f011ef8ffcc")     # lidt [0xfff8] (limit 0); int3
    m = Machine(bios=bytes(bios), serial="null", no_reboot=True)
    assert m.run(max_insns=10) == "triple-fault"
    with pytest.raises(SnapshotError) as err:
        m.save_snapshot(tmp_path / "tf.pysev")
    # it used to advise "run on by one instruction and save again", which cannot help
    assert str(err.value) == ("the guest triple faulted: a snapshot cannot hold a CPU in the "
                              "middle of delivering an exception")
    assert not (tmp_path / "tf.pysev").exists()


def test_a_reset_after_a_triple_fault_round_trips(tmp_path):
    bios = bytearray(4096)
    bios[0xFF0:0xFF6] = bytes.fromhex("0f011ef8ffcc")
    m = Machine(bios=bytes(bios), serial="null")
    assert m.run(max_insns=10) == "count" and m.resets == m.triple_faults == 5
    a, b = tmp_path / "a.pysev", tmp_path / "b.pysev"
    m.save_snapshot(a)
    r = Machine.load_snapshot(a, serial="null")
    r.save_snapshot(b)
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        assert za.read("snapshot.json") == zb.read("snapshot.json")
    assert m.run(max_insns=7) == r.run(max_insns=7) == "count"
    assert m.state_dict() == r.state_dict() and r.resets == 8


def test_saving_to_a_device_or_through_a_symlink(tmp_path):
    m = Machine(bios=SEVGUEST, serial="null")
    m.save_snapshot(os.devnull)         # used to fail in zipfile with struct.error
    real = tmp_path / "real.pysev"
    real.write_bytes(b"old")
    link = tmp_path / "link.pysev"
    link.symlink_to(real)
    m.save_snapshot(link)
    assert link.is_symlink() and Machine.load_snapshot(link, serial="null").icount == 0
    assert real.read_bytes()[:2] == b"PK"


@pytest.mark.parametrize("seed", [-1, 1 << 64, "abc", 1.5, True])
def test_a_seed_a_snapshot_could_not_load_back_is_refused(seed):
    from pysev.machine import MachineError
    # Machine(seed=...) took anything, and the snapshot of such a machine did not load
    with pytest.raises(MachineError) as err:
        Machine(bios=SEVGUEST, serial="null", seed=seed)
    assert str(err.value) == f"pysev run: -seed: invalid seed number '{seed}' (0..2^64-1)"


def test_the_largest_seed_round_trips(tmp_path):
    m = Machine(bios=SEVGUEST, serial="null", seed=(1 << 64) - 1)
    m.save_snapshot(tmp_path / "s.pysev")
    r = Machine.load_snapshot(tmp_path / "s.pysev", serial="null")
    assert r.cpu.random_seed == (1 << 64) - 1
    assert r.cpu.guest_random(8) == m.cpu.guest_random(8)


def test_debugcon_for_a_machine_saved_without_one_is_an_error(tmp_path):
    snap = str(tmp_path / "nodc.pysev")
    Machine(bios=SEVGUEST, serial="null").save_snapshot(snap)
    # the debug console's output used to be dropped without a word
    res = pysev("run", "--load-snapshot", snap, "-debugcon", "stdio", "--max-insns", "10")
    assert res.returncode == 2
    assert res.stderr == (f"pysev run: --load-snapshot: '{snap}': -debugcon: the saved "
                          "machine has no debug console (it was saved without -debugcon)\n")
    out = bytearray()
    m = Machine(bios=SEVGUEST, serial="null", debugcon="null")
    m.save_snapshot(snap)
    r = Machine.load_snapshot(snap, serial="null", debugcon=out.extend)
    assert r.debugcon is not None and r.debugcon.base == 0x402
