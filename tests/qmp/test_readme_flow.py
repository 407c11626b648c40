"""The README's "SEV guests and QMP" commands, run as written (paths moved to a temp dir)."""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

from qemu.qmp.legacy import QEMUMonitorProtocol

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## SEV guests and QMP\n(.*?)(?=^## )", text, re.M | re.S).group(1)
    block = re.search(r"^```sh\n(.*?)^```$", section, re.M | re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_readme_sev_qmp_commands_work(tmp_path):
    keygen, run = readme_commands()
    assert keygen[:3] == ["pysev", "owner", "keygen"] and run[:2] == ["pysev", "run"]
    sock = str(tmp_path / "pysev.sock")
    run = [a.replace("/tmp/pysev.sock", sock) for a in run]
    env = dict(os.environ)
    py = [sys.executable, "-m", "pysev"]
    subprocess.run(py + keygen[1:], cwd=tmp_path, check=True, env=env)
    bios = str(ROOT / "pysev" / "guests" / "sevguest.bin")
    run = [bios if a == "pysev/guests/sevguest.bin" else a for a in run]
    proc = subprocess.Popen(py + run[1:] + ["-serial", "null"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        qmp = QEMUMonitorProtocol(sock)
        qmp.connect()
        info = qmp.cmd("query-sev")
        assert (info["enabled"], info["state"], info["policy"], info["sev-type"]) == (
            True, "launch-secret", 1, "sev")
        data = qmp.cmd("query-sev-launch-measure")["data"]
        assert len(data) == 64                   # base64 of 48 bytes
        assert qmp.cmd("query-status")["status"] == "prelaunch"
        assert qmp.cmd("cont") == {}
        assert qmp.cmd("query-sev")["state"] == "running"
        qmp.cmd("quit")
        try:
            qmp.close()
        except EOFError:                          # the server has gone, as after QEMU's quit
            pass
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
