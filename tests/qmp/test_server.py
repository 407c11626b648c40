"""The QMP server (pysev.qmp.server) driven by the qemu.qmp library and by raw sockets.

The guest is a small BIOS that prints a line on COM1 and then increments a
dword at physical 0x1000 forever, so the tests can see that the guest keeps
running while QMP is served (pmemsave twice: the counter advances).  Machines
run in a subprocess (``python -m pysev run ... -S -qmp unix:...``) and in
process (Machine.run in a thread).
"""

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import assemble

import qemu.qmp as qmp                                     # noqa: E402
from qemu.qmp import QMPClient                            # noqa: E402
from qemu.qmp.legacy import QEMUMonitorProtocol           # noqa: E402

from pysev.machine import Machine, MachineError, parse_args   # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COUNTER = 0x1000

# a 4 KiB BIOS: mapped at 0xFFFFF000, entered at the reset vector 0xFFFFFFF0 (CS base 0xFFFF0000)
COUNTER_BIOS = """
start:
    xor ax, ax
    mov ds, ax
    mov dx, 0x3F8
    mov si, msg
.print:
    cs lodsb
    test al, al
    jz .count
    out dx, al
    jmp .print
.count:
    inc dword [0x1000]
    jmp .count
msg: db "counter bios", 10, 0
    times 0xFF0 - ($ - $$) db 0
    jmp 0xF000:start
    times 0x1000 - ($ - $$) db 0
"""

HALT_BIOS = """
start:
    cli
    hlt
    jmp start
    times 0xFF0 - ($ - $$) db 0
    jmp 0xF000:start
    times 0x1000 - ($ - $$) db 0
"""


def bios_image(src):
    code, _ = assemble(src, 16, 0xF000)
    assert len(code) == 0x1000
    return code


@pytest.fixture(scope="module")
def workdir():
    # short paths: a UNIX socket path must fit in 108 bytes
    with tempfile.TemporaryDirectory(prefix="pysev-qmp-", dir="/tmp") as d:
        with open(os.path.join(d, "counter.bin"), "wb") as f:
            f.write(bios_image(COUNTER_BIOS))
        yield d


_n = [0]


def sock_path(workdir):
    _n[0] += 1
    return os.path.join(workdir, f"q{_n[0]}.sock")


def wait_for_socket(path, proc=None, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"pysev exited early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"no socket at {path}")


def counter_in(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(), "little")


# ---- a raw client: bytes in, JSON lines out -------------------------------------------------

class Raw:
    def __init__(self, path, negotiate=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.events = []
        self.greeting = self.recv()
        if negotiate:
            assert self.cmd({"execute": "qmp_capabilities"}) == {"return": {}}

    def send(self, data):
        if isinstance(data, dict):
            data = json.dumps(data)
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def recv(self):
        line = self.file.readline()
        assert line, "connection closed"
        assert line.endswith(b"\r\n")
        return json.loads(line)

    def reply(self):
        """The next message that is not an event (events are kept in self.events)."""
        while True:
            msg = self.recv()
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    def cmd(self, data):
        self.send(data)
        return self.reply()

    def close(self):
        self.file.close()
        self.sock.close()


# ---- an in-process machine running in a thread ------------------------------------------------

class Running:
    def __init__(self, workdir, *extra, bios=None):
        self.path = sock_path(workdir)
        bios = bios or os.path.join(workdir, "counter.bin")
        self.machine = Machine.from_args(["-bios", bios, "-serial", "null", "-S",
                                          "-qmp", f"unix:{self.path},server=on,wait=off",
                                          *extra])
        self.reason = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.reason = self.machine.run()

    def counter(self):
        return int.from_bytes(self.machine.read_phys(COUNTER, 4), "little")

    def stop(self):
        if self.thread.is_alive():
            self.machine.submit(lambda: self.machine.qmp("quit"))
            self.thread.join(10)
        self.machine.close()


@pytest.fixture
def running(workdir):
    r = Running(workdir)
    yield r
    r.stop()


# ---- subprocess: qemu.qmp's async client ----------------------------------------------------

def start_pysev(workdir, *extra):
    path = sock_path(workdir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pysev", "run", "-bios", os.path.join(workdir, "counter.bin"),
         "-serial", "null", "-display", "none", "-S",
         "-qmp", f"unix:{path},server=on,wait=off", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_socket(path, proc)
    except BaseException:
        proc.kill()
        raise
    return proc, path


def test_subprocess_async_client_session(workdir):
    proc, path = start_pysev(workdir)
    dump = os.path.join(workdir, "dump.bin")
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600

        async def session():
            client = QMPClient("pysev-test")
            events = []

            async def collect():
                async for event in client.events:
                    events.append(event)

            await client.connect(path)
            version = client.greeting.QMP.version
            assert version["qemu"]["major"] == 7 and version["qemu"]["minor"] == 2
            assert version["package"].startswith("pysev ")
            assert client.greeting.QMP.capabilities == []
            collector = asyncio.create_task(collect())

            assert await client.execute("query-status") == {
                "status": "prelaunch", "singlestep": False, "running": False}
            await client.execute("pmemsave", {"val": COUNTER, "size": 4, "filename": dump})
            assert counter_in(dump) == 0                   # -S: nothing ran

            assert await client.execute("cont") == {}
            await asyncio.sleep(0.3)
            await client.execute("pmemsave", {"val": COUNTER, "size": 4, "filename": dump})
            first = counter_in(dump)
            await asyncio.sleep(0.3)
            await client.execute("pmemsave", {"val": COUNTER, "size": 4, "filename": dump})
            second = counter_in(dump)
            assert 0 < first < second                      # the guest runs meanwhile
            status = await client.execute("query-status")
            assert status["status"] == "running" and status["running"] is True

            assert await client.execute("stop") == {}
            await client.execute("pmemsave", {"val": COUNTER, "size": 4, "filename": dump})
            frozen = counter_in(dump)
            await asyncio.sleep(0.2)
            await client.execute("pmemsave", {"val": COUNTER, "size": 4, "filename": dump})
            assert counter_in(dump) == frozen               # paused
            assert (await client.execute("query-status"))["status"] == "paused"
            await client.execute("cont")

            with pytest.raises(qmp.ExecuteError) as err:
                await client.execute("no-such-command")
            assert err.value.error_class == "CommandNotFound"

            assert await client.execute("quit") == {}
            await asyncio.sleep(0.3)
            try:
                await client.disconnect()
            except EOFError:                               # the server closed first (as QEMU)
                pass
            collector.cancel()
            return events

        events = asyncio.run(asyncio.wait_for(session(), 30))
        names = [e["event"] for e in events]
        assert names == ["RESUME", "STOP", "RESUME", "SHUTDOWN"], names
        for e in events:
            ts = e["timestamp"]
            assert set(ts) == {"seconds", "microseconds"}
            assert abs(ts["seconds"] - time.time()) < 60 and 0 <= ts["microseconds"] < 10**6
        assert "data" not in events[0] and "data" not in events[1]
        assert events[-1]["data"] == {"guest": False, "reason": "host-qmp-quit"}
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert b"(quit)" in err
        assert not os.path.exists(path)                    # the socket is removed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_subprocess_legacy_client_and_sigterm(workdir):
    proc, path = start_pysev(workdir)
    try:
        mon = QEMUMonitorProtocol(path)
        greeting = mon.connect(negotiate=True)
        assert greeting["QMP"]["capabilities"] == []
        assert mon.cmd("query-status")["status"] == "prelaunch"
        mon.cmd("cont")
        ev = mon.pull_event(wait=5)
        assert ev["event"] == "RESUME" and set(ev["timestamp"]) == {"seconds", "microseconds"}
        resp = mon.cmd_obj({"execute": "query-version", "id": "v1"})
        assert resp["id"] == "v1" and resp["return"]["qemu"]["major"] == 7
        resp = mon.cmd_raw("query-status", {"bogus": 1})
        assert resp["error"] == {"class": "GenericError", "desc": "Parameter 'bogus' is unexpected"}
        out = mon.cmd("human-monitor-command", **{"command-line": "info status"})
        assert out == "VM status: running\r\n"

        proc.send_signal(signal.SIGTERM)                   # as QEMU: SHUTDOWN, exit 0
        ev = mon.pull_event(wait=10)
        assert ev["event"] == "SHUTDOWN"
        assert ev["data"] == {"guest": False, "reason": "host-signal"}
        try:
            mon.close()
        except EOFError:                                   # pysev closed first (so does QEMU)
            pass
        proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert not os.path.exists(path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- in process -----------------------------------------------------------------------------

def test_in_process_async_client(running):
    m = running

    async def session():
        client = QMPClient("in-process")
        await client.connect(m.path)
        assert (await client.execute("query-status"))["status"] == "prelaunch"
        await client.execute("cont")
        deadline = time.monotonic() + 10
        while m.counter() == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        a = m.counter()
        await asyncio.sleep(0.2)
        assert m.counter() > a > 0
        cpus = await client.execute("query-cpus-fast")
        assert cpus == [{"thread-id": m.machine.thread_id,
                         "props": {"core-id": 0, "thread-id": 0, "socket-id": 0},
                         "qom-path": "/machine/unattached/device[0]", "cpu-index": 0,
                         "target": "x86_64"}]
        names = {c["name"] for c in await client.execute("query-commands")}
        assert {"qmp_capabilities", "query-version", "query-commands", "query-status", "stop",
                "cont", "system_reset", "quit", "qom-list", "qom-get", "query-cpus-fast",
                "pmemsave", "memsave", "human-monitor-command", "query-sev"} <= names
        await client.disconnect()

    asyncio.run(asyncio.wait_for(session(), 20))
    assert m.thread.is_alive()
    # the Python API from another thread is queued to the machine thread too
    assert m.machine.qmp("query-status")["status"] == "running"


def test_in_process_run_returns_quit(workdir):
    r = Running(workdir)
    try:
        c = Raw(r.path, negotiate=True)
        assert c.cmd({"execute": "cont"}) == {"return": {}}
        assert c.cmd({"execute": "quit", "id": 9}) == {"return": {}, "id": 9}
        assert [e["event"] for e in c.events] == ["RESUME", "SHUTDOWN"]
        r.thread.join(10)
        assert r.reason == "quit" and r.machine.stop_reason == "quit"
        c.close()
    finally:
        r.stop()
    assert not os.path.exists(r.path)


MALFORMED = [
    # input, expected reply
    (b"foo\n", {"error": {"class": "GenericError",
                         "desc": "JSON parse error, invalid keyword 'foo'"}}),
    (b"42\n", {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}),
    (b'"str"', {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}),
    (b"[1, 2]", {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}),
    (b'{"id": 3}', {"id": 3, "error": {"class": "GenericError",
                                        "desc": "QMP input lacks member 'execute'"}}),
    (b'{"execute": "query-status", "foo": 1, "id": 5}',
     {"id": 5, "error": {"class": "GenericError", "desc": "QMP input member 'foo' is unexpected"}}),
    (b'{"exec-oob": "query-status"}',
     {"error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}),
    (b'{"execute": 1}',
     {"error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}),
    (b'{"execute": "query-status", "arguments": []}',
     {"error": {"class": "GenericError",
                "desc": "QMP input member 'arguments' must be an object"}}),
    (b'{"execute": "nosuch", "id": [1]}',
     {"id": [1], "error": {"class": "CommandNotFound",
                           "desc": "The command nosuch has not been found"}}),
    (b"}", {"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}),
    (b'{"a": 1, "a": 2}', {"error": {"class": "GenericError",
                                      "desc": "JSON parse error, duplicate key"}}),
    (b'{"execute": "query-status", "arguments": {"x": 1}}',
     {"error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}),
    (b'{"execute": "pmemsave", "arguments": {"val": "0", "size": 4, "filename": "/dev/null"}}',
     {"error": {"class": "GenericError",
                "desc": "Invalid parameter type for 'val', expected: integer"}}),
    (b'{"execute": "qmp_capabilities", "id": "again"}',
     {"id": "again", "error": {"class": "CommandNotFound",
                               "desc": "Capabilities negotiation is already complete, "
                                       "command ignored"}}),
    (b'{"execute": "query-status", "id": {"a": [1, "\\u00e9"]}}',
     {"return": {"status": "prelaunch", "singlestep": False, "running": False},
      "id": {"a": [1, "\u00e9"]}}),
]


def test_malformed_input(running):
    c = Raw(running.path)
    assert c.greeting["QMP"]["capabilities"] == []
    # before negotiation
    assert c.cmd({"execute": "query-status", "id": 1}) == {
        "id": 1, "error": {"class": "CommandNotFound",
                           "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}
    assert c.cmd({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}) == {
        "error": {"class": "GenericError", "desc": "Capability 'oob' not available"}}
    assert c.cmd({"execute": "qmp_capabilities", "id": 1}) == {"return": {}, "id": 1}
    for data, expected in MALFORMED:
        assert c.cmd(data) == expected, data
    # NaN is no JSON; a partial message, then 0xFF: one error, the parser starts afresh
    assert c.cmd(b'{"execute": "query-status", "id": NaN}')["error"]["class"] == "GenericError"
    c.send(b'{"execute": "query-status"')
    reply = c.cmd(b"\xff")
    assert reply["error"]["desc"].startswith("JSON parse error, stray")
    assert c.cmd(b'{"execute": "query-status"}')["return"]["status"] == "prelaunch"
    # several messages in one write, split across writes, CR LF or nothing between them
    c.send(b'{"execute": "query-status", "id": 1}{"execute": "query-status", "id": 2}\r\n'
           b'{"execute": "query-')
    assert c.reply()["id"] == 1 and c.reply()["id"] == 2
    c.send(b'status", "id": 3}')
    assert c.reply()["id"] == 3
    # too large: one error, the rest of that message is skipped, the connection goes on
    big = b'{"execute": "query-status", "id": "' + b"x" * (2 << 20) + b'"}'
    assert c.cmd(big) == {"error": {"class": "GenericError",
                                    "desc": "JSON token size limit exceeded"}}
    assert c.cmd(b'{"execute": "query-status", "id": 4}')["id"] == 4
    deep = b"[" * 600 + b"]" * 600
    assert c.cmd(deep) == {"error": {"class": "GenericError",
                                     "desc": "JSON nesting depth limit exceeded"}}
    assert c.cmd(b'{"execute": "query-status", "id": 5}')["id"] == 5
    c.close()


def test_two_clients_and_events(running):
    a = Raw(running.path, negotiate=True)
    b = Raw(running.path)                                  # not negotiated yet
    assert b.cmd({"execute": "cont"})["error"]["class"] == "CommandNotFound"
    assert a.cmd({"execute": "cont", "id": "a1"}) == {"return": {}, "id": "a1"}
    assert [e["event"] for e in a.events] == ["RESUME"]
    assert b.cmd({"execute": "qmp_capabilities"}) == {"return": {}}
    assert b.events == []                                  # events only after negotiation
    assert b.cmd({"execute": "system_reset", "id": "b1"}) == {"return": {}, "id": "b1"}
    reset = {"guest": False, "reason": "host-qmp-system-reset"}
    assert [(e["event"], e["data"]) for e in b.events] == [("RESET", reset)]
    # a sees the RESET too, before the reply to its next command
    assert a.cmd({"execute": "stop", "id": "a2"}) == {"return": {}, "id": "a2"}
    assert [e["event"] for e in a.events] == ["RESUME", "RESET", "STOP"]
    assert b.cmd({"execute": "query-status"})["return"]["status"] == "paused"
    assert [e["event"] for e in b.events] == ["RESET", "STOP"]
    # a reset of a stopped machine leaves it in prelaunch, as in QEMU
    b.cmd({"execute": "system_reset"})
    assert a.cmd({"execute": "query-status"})["return"]["status"] == "prelaunch"
    a.close()
    b.close()


def test_disconnect_mid_message_does_not_disturb(running):
    keep = Raw(running.path, negotiate=True)
    keep.cmd({"execute": "cont"})
    for partial in (b'{"execute": "query-st', b'{"execute": "query-status", "arguments": {"a": "',
                    b"", b"[[[[", b'"unterminated'):
        c = Raw(running.path, negotiate=bool(partial))
        if partial:
            c.send(partial)
        c.close()
    # one that goes away with a command pending, and one that never reads its replies
    c = Raw(running.path, negotiate=True)
    c.send({"execute": "human-monitor-command", "arguments": {"command-line": "info registers"}})
    c.close()
    mute = Raw(running.path, negotiate=True)
    for _ in range(50):
        mute.send({"execute": "query-status"})
    before = running.counter()
    time.sleep(0.2)
    assert running.counter() > before                      # the guest kept running
    assert keep.cmd({"execute": "query-status", "id": 7}) == {
        "return": {"status": "running", "singlestep": False, "running": True}, "id": 7}
    mute.close()
    keep.close()


def test_hmp(running):
    c = Raw(running.path, negotiate=True)

    def hmp(line):
        reply = c.cmd({"execute": "human-monitor-command", "arguments": {"command-line": line}})
        return reply.get("return", reply)

    assert hmp("info sev") == "SEV is not enabled\r\n"
    assert hmp("info status") == "VM status: paused (prelaunch)\r\n"
    regs = hmp("info registers")
    assert regs.startswith("\r\nCPU#0\r\nEAX=00000000 ")
    assert "EIP=0000fff0" in regs and "CS =f000 ffff0000 0000ffff 00009b00" in regs
    assert all(line.endswith("\r") for line in regs.split("\n")[:-1])
    # the BIOS: 31 c0 8e d8 ba f8 03 be ... at 0xfffff000
    assert hmp("xp /4xb 0xfffff000") == "00000000fffff000: 0x31 0xc0 0x8e 0xd8\r\n"
    assert hmp("xp /2x 0xfffff000") == "00000000fffff000: 0x31 0xc0\r\n"   # size b stays
    assert hmp("xp /2xw 0xfffff000") == "00000000fffff000: 0xd88ec031 0xbe03f8ba\r\n"
    assert hmp("xp /1xh 0xfffff000") == "00000000fffff000: 0xc031\r\n"
    assert hmp("xp 0xfffff000") == "00000000fffff000: 0xc031\r\n"    # the last size stays
    assert hmp("xp /3g 0xfffffff0") == (
        "00000000fffffff0: 0x000000f000f000ea 0x0000000000000000\r\n"
        "0000000100000000: 0xffffffffffffffff\r\n")
    assert hmp("xp /10b 0xfffffff0") == (
        "00000000fffffff0: 0xea 0x00 0xf0 0x00 0xf0 0x00 0x00 0x00\r\n"
        "00000000fffffff8: 0x00 0x00\r\n")
    assert hmp("xp /2w 0xffff0+0x10-0x10") == "00000000000ffff0: 0x00f000ea 0x000000f0\r\n"
    assert hmp("xp /2w 0xfffffffffffff0") == "00fffffffffffff0: Cannot access memory\r\n"
    assert hmp("x /2xw 0xfffff000") == "00000000fffff000: 0xd88ec031 0xbe03f8ba\r\n"
    assert hmp("xp /2i 0xfffff000").startswith("0xfffff000:  31 c0 ")
    assert hmp("xp") == 'unexpected end of expression\r\nTry "help xp" for more information\r\n'
    hint = 'Try "help xp" for more information\r\n'
    assert hmp("xp /2q 0") == "invalid char in format: 'q'\r\n" + hint
    assert hmp("xp /2x foo") == "invalid char 'f' in expression\r\n" + hint
    assert hmp("xp /2x 0x100 junk") == (
        "xp: extraneous characters at the end of line\r\nTry \"help xp\" for more information\r\n")
    assert hmp("foo bar") == "unknown command: 'foo'\r\n"
    assert hmp("info foo") == "unknown command: 'info foo'\r\n"
    assert hmp("") == ""
    assert hmp("cont") == ""
    assert hmp("info status") == "VM status: running\r\n"
    assert [e["event"] for e in c.events] == ["RESUME"]
    c.close()


def test_memory_and_qom_commands(running, workdir):
    c = Raw(running.path, negotiate=True)
    c.cmd({"execute": "cont"})
    time.sleep(0.1)
    c.cmd({"execute": "stop"})
    pdump, vdump = os.path.join(workdir, "p.bin"), os.path.join(workdir, "v.bin")
    assert c.cmd({"execute": "pmemsave", "arguments": {
        "val": 0xFFFFF000, "size": 0x1000, "filename": pdump}}) == {"return": {}}
    with open(pdump, "rb") as f:
        assert f.read() == bios_image(COUNTER_BIOS)
    # paging is off: virtual = physical
    assert c.cmd({"execute": "memsave", "arguments": {
        "val": COUNTER, "size": 4, "filename": vdump, "cpu-index": 0}}) == {"return": {}}
    assert counter_in(vdump) == running.counter() > 0
    assert c.cmd({"execute": "memsave", "arguments": {
        "val": 0, "size": 4, "filename": vdump, "cpu-index": 3}})["error"]["desc"] == \
        "Parameter 'cpu-index' expects a CPU number"
    assert c.cmd({"execute": "pmemsave", "arguments": {
        "val": 0, "size": 4, "filename": "/nonexistent/x"}})["error"]["desc"] == \
        "Could not open '/nonexistent/x': No such file or directory"
    assert c.cmd({"execute": "qom-list", "arguments": {"path": "/"}})["return"] == [
        {"name": "type", "type": "string"}, {"name": "objects", "type": "child<container>"},
        {"name": "machine", "type": "child<pc-q35-7.2-machine>"}]
    assert c.cmd({"execute": "qom-get", "arguments": {"path": "/machine", "property": "type"}}) \
        == {"return": "pc-q35-7.2-machine"}
    assert c.cmd({"execute": "qom-get", "arguments": {"path": "/nope", "property": "x"}}) == {
        "error": {"class": "DeviceNotFound", "desc": "Device '/nope' not found"}}
    assert c.cmd({"execute": "qom-get", "arguments": {"path": "/machine", "property": "x"}}) == {
        "error": {"class": "GenericError", "desc": "Property 'pc-q35-7.2-machine.x' not found"}}
    c.close()


def test_sev_launch_paused_until_cont(workdir):
    keys = {}
    for name, byte in (("tik", b"\x11"), ("tek", b"\x22")):
        keys[name] = os.path.join(workdir, f"{name}.key")
        with open(keys[name], "wb") as f:
            f.write(byte * 16)
    r = Running(workdir, "-object",
                f"sev-emulated,id=sev0,policy=0x1,tik={keys['tik']},tek={keys['tek']}",
                "-machine", "q35,memory-encryption=sev0")
    try:
        c = Raw(r.path, negotiate=True)

        def hmp(line):
            return c.cmd({"execute": "human-monitor-command",
                          "arguments": {"command-line": line}})["return"]
        assert c.cmd({"execute": "query-sev"})["return"]["state"] == "launch-secret"
        assert "data" in c.cmd({"execute": "query-sev-launch-measure"})["return"]
        assert hmp("info sev") == ("SEV type: sev\r\nstate: launch-secret\r\nbuild: 0\r\n"
                                   "api version: 1.55\r\nhandle: 1\r\ndebug: off\r\n"
                                   "key-sharing: on\r\n")
        props = c.cmd({"execute": "qom-list", "arguments": {"path": "/objects/sev0"}})["return"]
        assert {"name": "tik", "type": "string"} in props
        assert {"name": "policy", "type": "uint32"} in props
        for name in ("tik", "tek"):                         # the path, never the key
            assert c.cmd({"execute": "qom-get", "arguments": {
                "path": "/objects/sev0", "property": name}}) == {"return": keys[name]}
        assert c.cmd({"execute": "qom-get", "arguments": {
            "path": "sev0", "property": "type"}}) == {"return": "sev-emulated"}
        assert c.cmd({"execute": "qom-get", "arguments": {
            "path": "/objects/sev0", "property": "cbitpos"}}) == {"return": 51}
        assert c.cmd({"execute": "qom-get", "arguments": {
            "path": "/machine", "property": "memory-encryption"}}) == {"return": "sev0"}
        time.sleep(0.1)
        assert r.counter() == 0                            # paused: the guest has not run
        c.cmd({"execute": "cont"})                         # LAUNCH_FINISH
        assert c.cmd({"execute": "query-sev"})["return"]["state"] == "running"
        assert "state: running" in hmp("info sev")
        c.close()
    finally:
        r.stop()


def test_halted_guest_keeps_serving(workdir):
    path = os.path.join(workdir, "halt.bin")
    with open(path, "wb") as f:
        f.write(bios_image(HALT_BIOS))
    r = Running(workdir, bios=path)
    try:
        c = Raw(r.path, negotiate=True)
        c.cmd({"execute": "cont"})
        deadline = time.monotonic() + 5
        while not r.machine.halted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert r.machine.halted and r.thread.is_alive()
        assert c.cmd({"execute": "query-status"})["return"]["status"] == "running"
        assert "HLT=1" in c.cmd({"execute": "human-monitor-command", "arguments": {
            "command-line": "info registers"}})["return"]
        icount = r.machine.icount
        c.cmd({"execute": "system_reset"})                 # runs up to the HLT again
        deadline = time.monotonic() + 5
        while not (r.machine.halted and r.machine.icount > icount) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert r.machine.resets == 1 and r.machine.icount > icount
        c.cmd({"execute": "quit"})
        r.thread.join(10)
        assert r.reason == "quit"
        c.close()
    finally:
        r.stop()


# ---- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,path", [
    ("unix:/tmp/a.sock,server=on,wait=off", "/tmp/a.sock"),
    ("unix:/tmp/a.sock,server,nowait", "/tmp/a.sock"),
    ("unix:/tmp/a,,b.sock,wait=off,server=on", "/tmp/a,b.sock"),
])
def test_qmp_option(spec, path):
    opts = parse_args(["-bios", "x.bin", "-qmp", spec, "-S"])
    assert opts.qmp == path and opts.start_paused is True
    kwargs = opts.machine_kwargs()
    assert kwargs["qmp"] == path and kwargs["start_paused"] is True


@pytest.mark.parametrize("spec,words", [
    ("tcp:localhost:4444,server=on,wait=off", "UNIX socket only"),
    ("stdio", "UNIX socket only"),
    ("unix:/tmp/a.sock", "add server=on"),
    ("unix:/tmp/a.sock,server=off,wait=off", "add server=on"),
    ("unix:/tmp/a.sock,server=on", "wait=on"),
    ("unix:/tmp/a.sock,server=on,wait=on", "wait=on"),
    ("unix:/tmp/a.sock,server=on,wait=off,telnet=on", "unsupported option 'telnet=on'"),
    ("unix:,server=on,wait=off", "missing socket path"),
])
def test_qmp_option_errors(spec, words):
    with pytest.raises(MachineError) as err:
        parse_args(["-bios", "x.bin", "-qmp", spec])
    assert str(err.value).startswith("pysev run: -qmp: ") and words in str(err.value)


def test_cli_option_errors(workdir):
    from pysev.cli import main
    bios = os.path.join(workdir, "counter.bin")
    assert main(["run", "-bios", bios, "-S"]) == 2                     # -S needs -qmp
    with pytest.raises(MachineError):
        parse_args(["-bios", bios, "-qmp", "unix:/tmp/a,server,nowait",
                    "-qmp", "unix:/tmp/b,server,nowait"])
    # a path that is not a socket is never replaced
    with pytest.raises(MachineError) as err:
        Machine.from_args(["-bios", bios, "-qmp", f"unix:{bios},server=on,wait=off"])
    assert "cannot listen" in str(err.value)
    assert os.path.getsize(bios) == 0x1000


def test_many_clients_at_once(running):
    """Legacy synchronous clients in threads, all at once, while the guest runs."""
    setup = QEMUMonitorProtocol(running.path)
    setup.connect()
    setup.cmd("cont")
    errors = []

    def worker(n):
        try:
            mon = QEMUMonitorProtocol(running.path)
            mon.connect()
            for i in range(20):
                resp = mon.cmd_obj({"execute": "query-status", "id": f"{n}-{i}"})
                assert resp == {"return": {"status": "running", "singlestep": False,
                                           "running": True}, "id": f"{n}-{i}"}, resp
            mon.close()
        except Exception as exc:                           # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    before = running.counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert running.counter() > before
    setup.close()


def test_splitter_is_independent_of_chunking():
    import random
    from pysev.qmp.server import JSONSplitter
    stream = (b'{"execute": "a\\"}{[", "id": [1, {"x": "]"}]}  42 "s\\\\"\n[1,2]true '
              b'{"k": "\xc3\xa9"}nul }{"a":1,"a":2}{"x": "\xc3"} ')
    whole = JSONSplitter().feed(stream)
    assert [kind for kind, _ in whole] == ["message"] * 6 + ["error"] * 4
    rng = random.Random(1)
    for _ in range(300):
        splitter, out, i = JSONSplitter(), [], 0
        while i < len(stream):
            n = rng.randint(1, 9)
            out += splitter.feed(stream[i:i + n])
            i += n
        assert out == whole
    assert not splitter.pending
