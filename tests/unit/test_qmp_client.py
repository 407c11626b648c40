"""pysev.qmp.client: the synchronous QMP client the demo's guest owner uses, against
a machine serving QMP (Machine.run in a thread)."""

import os
import pathlib
import socket
import tempfile
import threading
import time

import pytest

from pysev.machine import Machine, parse_args
from pysev.qmp.client import QMPClient, QMPClientError, QMPConnectionError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEVGUEST = ROOT / "pysev" / "guests" / "sevguest.bin"


@pytest.fixture
def served():
    """A paused machine (sevguest.bin, -S) serving QMP at a short socket path."""
    with tempfile.TemporaryDirectory(prefix="pysev-client-", dir="/tmp") as d:
        path = os.path.join(d, "q.sock")
        out = bytearray()
        kwargs = parse_args(["-bios", str(SEVGUEST), "-S",
                             "-qmp", f"unix:{path},server=on,wait=off"]).machine_kwargs()
        kwargs["serial"] = [out.extend]
        machine = Machine(**kwargs)
        result = []
        thread = threading.Thread(target=lambda: result.append(machine.run()), daemon=True)
        thread.start()
        try:
            yield machine, path, out, result
        finally:
            if thread.is_alive():
                machine.submit(lambda: setattr(machine, "quit_requested", True))
                thread.join(10)
            machine.close()


def test_session(served):
    machine, path, out, result = served
    with QMPClient(path, timeout=10) as qmp:
        assert qmp.greeting["version"]["package"].startswith("pysev ")
        assert qmp.execute("query-status") == {"status": "prelaunch", "singlestep": False,
                                               "running": False}
        assert qmp.execute("cont") == {}
        assert [e["event"] for e in qmp.take_events()] == ["RESUME"]
        assert qmp.execute("query-status")["running"] is True
        deadline = time.monotonic() + 30
        while not machine.halted:                   # the guest runs to its hlt
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert qmp.execute("query-status")["running"] is True     # halted, as in QEMU
        assert qmp.execute("quit") == {}
        event = qmp.wait_event("SHUTDOWN", timeout=10)
        assert event["data"] == {"guest": False, "reason": "host-qmp-quit"}
        assert "timestamp" in event
    assert b"SEV not active" in out and out.endswith(b"sevguest: halt\n")
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        time.sleep(0.01)
    assert result == ["quit"]


def test_error_replies_raise(served):
    machine, path, out, result = served
    with QMPClient(path, timeout=10) as qmp:
        with pytest.raises(QMPClientError) as info:
            qmp.execute("no-such-command")
        assert info.value.error_class == "CommandNotFound"
        assert info.value.desc == "The command no-such-command has not been found"
        with pytest.raises(QMPClientError) as info:
            qmp.execute("query-status", bogus=1)
        assert (info.value.error_class, info.value.desc) == ("GenericError",
                                                             "Parameter 'bogus' is unexpected")
        with pytest.raises(QMPClientError, match="SEV"):
            qmp.execute("sev-inject-launch-secret", **{"packet-header": "AA==", "secret": "AA=="})
        # arguments with dashes, through a dict
        assert qmp.execute("human-monitor-command",
                           **{"command-line": "info status"}) == "VM status: paused (prelaunch)\r\n"


def test_connection_errors(tmp_path):
    with pytest.raises(QMPConnectionError, match="cannot connect to"):
        QMPClient(str(tmp_path / "none.sock"), timeout=2)


def test_silent_server_times_out():
    with tempfile.TemporaryDirectory(prefix="pysev-client-", dir="/tmp") as d:
        path = os.path.join(d, "mute.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        try:
            with pytest.raises(QMPConnectionError, match="no reply"):
                QMPClient(path, timeout=0.3)        # no greeting ever comes
        finally:
            server.close()


def test_not_qmp_server():
    with tempfile.TemporaryDirectory(prefix="pysev-client-", dir="/tmp") as d:
        path = os.path.join(d, "http.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)

        def answer():
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()
        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            with pytest.raises(QMPConnectionError, match="not JSON"):
                QMPClient(path, timeout=5)
        finally:
            t.join(5)
            server.close()
