"""``pysev demo``: an SEV launch from both sides, in one process.

The host starts a q35 machine with ``-object sev-emulated``, paused (``-S``),
serving QMP on a UNIX socket, and runs it in a thread.  The guest owner, with a
fresh TIK and TEK, talks to it only through that socket (pysev.qmp.client), as a
remote owner would:

  1. query-sev: SEV enabled, state launch-secret, the policy;
  2. query-sev-launch-measure: the measurement (MEASURE || MNONCE);
  3. the expected launch digest (SHA-256 of the firmware image the owner has)
     and the measurement checked against it (pysev.owner);
  4. an efi_secret table, encrypted under the TEK and MACed under the TIK over
     the measurement, injected with sev-inject-launch-secret;
  5. cont: the guest runs; its serial output is shown as "guest | " lines;
  6. quit, with its SHUTDOWN event.

The default firmware is the bundled SEV test guest (pysev/guests/sevguest.asm),
which detects SEV, switches to page tables with the C-bit, verifies them with
RDRAND and prints the secret it finds at 0x800000.  ``--bios FILE`` runs the same
flow on the user's firmware, by default for at most DEFAULT_BIOS_INSNS
instructions.
"""

import codecs
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time

BUNDLED_GUEST = "sevguest"
SECRET_GPA = 0x800000                   # where sevguest looks for the secret table
SECRET_GUID = "a1d7b202-0b0f-43f4-9a04-485a6e266c97"
SECRET_TEXT = "pysev demo secret: the guest owner trusts this VM"
POLICY = 0x1                            # NODBG: the policy the owner asks for and checks
DEFAULT_BIOS_INSNS = 20_000_000         # --max-insns default with --bios
TICK = 5_000_000                        # a progress line every TICK guest instructions
QMP_TIMEOUT = 60.0                      # seconds to wait for a QMP reply
STEPS = 6
GUEST_PREFIX = "guest | "
INDENT = "      "


class DemoError(Exception):
    """The demo cannot go on: a one-line message and the exit code."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class Console:
    """stdout shared by the host's progress lines and the guest's serial output.

    Guest bytes (from the machine thread) become lines prefixed with "guest | ";
    a progress line first ends a guest line left open.
    """

    def __init__(self, stream=None):
        self.stream = sys.stdout if stream is None else stream
        self.lock = threading.Lock()
        self.line_open = False
        self.guest_bytes = 0
        self.broken = False                     # stdout failed under a guest write
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode

    def guest(self, data):
        """The serial sink: called with the bytes the guest sends (machine thread).
        A failing stdout (a closed pipe) never stops the guest: its output is dropped."""
        data = bytes(data)
        with self.lock:
            self.guest_bytes += len(data)
            out = []
            for char in self._decode(data):
                if char == "\r":
                    continue
                if not self.line_open:
                    out.append(GUEST_PREFIX)
                    self.line_open = True
                out.append(char)
                if char == "\n":
                    self.line_open = False
            if self.broken:
                return
            text = "".join(out)
            encoding = getattr(self.stream, "encoding", None)
            if encoding:                                # what the terminal cannot show: '?'
                text = text.encode(encoding, "replace").decode(encoding)
            try:
                self._write(text)
            except (OSError, ValueError):
                self.broken = True

    def line(self, text):
        """One progress line."""
        with self.lock:
            lead = "\n" if self.line_open else ""
            self.line_open = False
            self._write(f"{lead}{text}\n")

    def end_guest_line(self):
        with self.lock:
            if self.line_open:
                self.line_open = False
                self._write("\n")

    def _write(self, text):
        if text:
            self.stream.write(text)
            self.stream.flush()


def describe_cpu(cpu):
    """Where the CPU is: the mode, paging, CS:RIP."""
    mode = cpu.mode
    if not mode.pe:
        where = "real mode"
    elif mode.long:
        where = "64-bit mode" if mode.bits == 64 else "compatibility mode"
    else:
        where = f"{mode.bits}-bit protected mode"
    if cpu.cr0 & (1 << 31):
        where += ", paging on"
    return f"{where}, at {cpu.seg_sel[1]:04x}:{cpu.rip:x}"


def _short_path(base):
    """A temporary directory for the keys and the QMP socket.  -object takes no
    ",," escapes and a UNIX socket path is limited to 107 bytes, so a TMPDIR with a
    comma or a long one is replaced by /tmp."""
    if "," in base or len(base) > 80:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="pysev-demo-", dir=base)


class SevDemo:
    """One run of the demo; :meth:`run` returns the exit code or raises DemoError."""

    def __init__(self, bios=None, max_insns=None, secret_gpa=None, log_items=(), log=None,
                 console=None):
        self.bios = bios
        self.bundled = bios is None
        if max_insns is None:
            max_insns = 0 if self.bundled else DEFAULT_BIOS_INSNS
        self.limit = max_insns                      # 0: none
        self.secret_gpa = secret_gpa
        self.log_items = tuple(log_items)
        self.log = log
        self.out = console or Console()
        self.machine = None
        self.client = None
        self.thread = None
        self.guest_stopped = threading.Event()      # the run ended without a halt
        self.stop = None                            # (reason, detail) of that end
        self.t_start = None

    # ---- the host: the machine in a thread -----------------------------------------------
    def _build_machine(self, tmp, bios_path, keys):
        from pysev import machine as pm
        from pysev.owner import write_keys
        from pysev.owner import OwnerError

        tik, tek = os.path.join(tmp, "tik.bin"), os.path.join(tmp, "tek.bin")
        try:
            write_keys(tik, tek, keys=keys)
        except OwnerError as exc:
            raise DemoError(str(exc)) from None
        self.socket = os.path.join(tmp, "qmp.sock")
        argv = ["-bios", os.fspath(bios_path), "-machine", "q35,memory-encryption=sev0",
                "-object", f"sev-emulated,id=sev0,policy={POLICY:#x},tik={tik},tek={tek}",
                "-no-reboot", "-S", "-qmp", f"unix:{self.socket},server=on,wait=off"]
        try:
            kwargs = pm.parse_args(argv).machine_kwargs()
            kwargs["serial"] = [self.out.guest]
            kwargs["log_items"] = self.log_items
            kwargs["log"] = self.log
            self.machine = pm.Machine(**kwargs)
        except pm.MachineError as exc:
            message = str(exc).removeprefix("pysev run: ")
            if message.startswith("-bios:"):
                message = "--bios" + message[len("-bios"):]
            raise DemoError(message) from None

    def _machine_main(self):
        """The machine thread: run the guest, then keep serving QMP until quit."""
        from pysev.cpu import EngineError

        m = self.machine
        try:
            self.stop = self._run_guest()
        except EngineError as exc:
            self.stop = ("internal-error", str(exc))
        except Exception as exc:                    # never a traceback from the thread
            self.stop = ("internal-error", f"{type(exc).__name__}: {exc}")
        finally:
            self.guest_stopped.set()
        # the guest stopped short of halting (limit, triple fault, error): pause the VM
        # and go on serving the owner's commands until quit
        while not m.quit_requested:
            try:
                if m.run_state == "running":
                    m.qmp("stop")
                m.run(max_insns=0)
            except Exception:
                break

    def _run_guest(self):
        """Run in TICK slices (a progress line after each) until the limit, or until
        the run ends otherwise.  With a QMP server a halted guest does not end the
        run: it waits, serving QMP, until quit."""
        m = self.machine
        start = m.icount
        while True:
            chunk = TICK
            if self.limit:
                chunk = min(chunk, self.limit - (m.icount - start))
                if chunk <= 0:
                    return ("count", None)
            reason = m.run(max_insns=chunk)
            if reason != "count":
                if reason == "triple-fault":
                    return (reason, m.stop_info or getattr(m.cpu, "triple_fault_info", None))
                return (reason, m.stop_info)
            done = m.icount - start
            if self.limit and done >= self.limit:
                return ("count", None)
            elapsed = time.perf_counter() - (self.t_start or time.perf_counter())
            self.out.line(f"{INDENT}{done:,} instructions, {elapsed:.1f} s")

    def _shutdown(self):
        """quit over QMP (or, failing that, from the host), stop the thread, close the
        machine: the QMP server ends and its socket file goes."""
        m = self.machine
        serving = self.thread is not None and self.thread.is_alive()
        if self.client is not None:
            if serving and not m.quit_requested:
                try:
                    self.client.execute("quit")
                except Exception:
                    pass
            self.client.close()
        if self.thread is not None and self.thread.is_alive():
            def quit_now():
                m.quit_requested = True
                m.emit_shutdown("host-error")
            m.submit(quit_now)
            self.thread.join(10)
        m.close()

    # ---- the flow -------------------------------------------------------------------------
    def run(self):
        from pysev.owner import generate_keys

        base = tempfile.gettempdir()
        tmp = _short_path(base)
        try:
            with contextlib.ExitStack() as stack:
                if self.bundled:
                    from importlib import resources
                    from pysev import guests
                    bios_path = stack.enter_context(resources.as_file(
                        resources.files(guests).joinpath(BUNDLED_GUEST + ".bin")))
                    name = BUNDLED_GUEST + ".bin"
                else:
                    bios_path = self.bios
                    name = os.path.basename(self.bios)
                keys = generate_keys()                    # the owner's TIK and TEK
                self._build_machine(tmp, bios_path, keys)
                try:
                    return self._flow(bios_path, name, keys)
                finally:
                    self._shutdown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _step(self, n, text):
        self.out.line(f"[{n}/{STEPS}] {text}")

    def _qmp(self, name, **arguments):
        from pysev.qmp.client import QMPClientError, QMPConnectionError
        try:
            return self.client.execute(name, **arguments)
        except QMPConnectionError as exc:
            raise DemoError(f"QMP: {exc.desc}") from None
        except QMPClientError as exc:
            raise DemoError(f"{name}: {exc.desc}") from None

    def _flow(self, bios_path, name, keys):
        from pysev import owner
        from pysev.owner.common import read_file
        from pysev.qmp.client import QMPClient, QMPClientError

        m = self.machine
        size = m.bios_size
        what = "the bundled SEV test guest" if self.bundled else "your firmware"
        size = f"{size >> 20} MiB" if size % (1 << 20) == 0 else f"{size >> 10} KiB"
        self.out.line(f"pysev demo: {name} ({what}, {size}) starts paused under "
                      "sev-emulated; the guest owner connects over QMP")
        self.thread = threading.Thread(target=self._machine_main, name="pysev-demo-machine",
                                       daemon=True)
        self.thread.start()
        try:
            self.client = QMPClient(self.socket, timeout=QMP_TIMEOUT)
        except QMPClientError as exc:
            raise DemoError(f"QMP: {exc.desc}") from None
        tik, tek = keys

        # 1. what the host says it launched
        info = self._qmp("query-sev")
        if not info.get("enabled"):
            raise DemoError("query-sev: SEV is not enabled for the guest")
        if info.get("state") != "launch-secret":
            raise DemoError(f"query-sev: the launch is in state {info.get('state')}, "
                            "not launch-secret")
        self._step(1, f"owner: query-sev: SEV enabled, state {info['state']}, "
                      f"policy {info['policy']:#x}, API {info['api-major']}.{info['api-minor']}, "
                      f"build {info['build-id']}")

        # 2. the measurement
        data = self._qmp("query-sev-launch-measure").get("data", "")
        try:
            measure, mnonce = owner.parse_measurement(data)
        except owner.OwnerError as exc:
            raise DemoError(f"query-sev-launch-measure: {exc}") from None
        self._step(2, f"owner: query-sev-launch-measure: {data}")

        # 3. checked against the image the owner has
        try:
            image = read_file(bios_path, "firmware")
            digest = owner.launch_digest(image)
            context = owner.LaunchContext(policy=POLICY, api_major=info["api-major"],
                                          api_minor=info["api-minor"],
                                          build_id=info["build-id"])
        except owner.OwnerError as exc:
            raise DemoError(str(exc)) from None
        self._step(3, f"owner: expected launch digest, SHA-256 of {name}: {digest.hex()}")
        if not owner.verify_measurement(measure, mnonce, tik, digest, context):
            raise DemoError("measurement MISMATCH: the host did not launch this firmware with "
                            f"policy {POLICY:#x} under the owner's TIK; no secret sent")
        self.out.line(f"{INDENT}measurement verified")

        # 4. the secret, for this launch only
        gpa, where = self._secret_gpa(image)
        table = owner.build_secret_table([(SECRET_GUID, SECRET_TEXT.encode())])
        header, trans = owner.package_secret(measure, tik, tek, table)
        self._qmp("sev-inject-launch-secret", **owner.inject_arguments(header, trans, gpa))
        self._step(4, f"owner: sev-inject-launch-secret: a {len(table)}-byte efi_secret table, "
                      f"encrypted under the TEK, at {gpa:#x}{where}")

        # 5. run
        self._step(5, "host: cont: the guest runs; its serial output follows")
        self.t_start = time.perf_counter()
        self._qmp("cont")
        while True:
            if m.halted:
                reason, detail = "hlt", None
                break
            if self.guest_stopped.wait(0.002):
                reason, detail = self.stop
                break
        elapsed = time.perf_counter() - self.t_start
        count = m.icount
        self.out.end_guest_line()
        failure = self._report_stop(reason, detail, count)

        # 6. quit
        try:
            self.client.execute("quit")
            event = self.client.wait_event("SHUTDOWN", timeout=10)
        except QMPClientError as exc:
            raise DemoError(f"quit: {exc.desc}") from None
        self._step(6, f"host: quit: SHUTDOWN ({event.get('data', {}).get('reason', '?')})")
        rate = count / elapsed if elapsed > 0 else float("inf")
        self.out.line(f"pysev demo: {count:,} guest instructions in {elapsed:.3f} s "
                      f"({rate:,.0f} instructions/s)")
        if failure:
            raise DemoError(failure)
        return 0

    def _secret_gpa(self, image):
        """Where the secret goes: --secret-gpa, else the firmware's own secret area (an
        OVMF AmdSev build declares one), else 0x800000 (the sevguest convention)."""
        from pysev.sev import ovmf

        if self.secret_gpa is not None:
            return self.secret_gpa, ""
        try:
            area = ovmf.secret_area(image)
        except ovmf.OvmfError:
            area = None
        if area is not None:
            return area[0], " (the firmware's secret area)"
        return SECRET_GPA, ""

    def _report_stop(self, reason, detail, count):
        """The progress line for how the run ended; returns an error message for a
        failure (triple fault, exception, internal error), else None."""
        m = self.machine
        if reason == "hlt":
            self.out.line(f"{INDENT}the guest halted after {count:,} instructions")
            return None
        where = describe_cpu(m.cpu)
        post = f", last POST code {m.post.value:#04x}" if m.post.value is not None else ""
        if reason == "count":
            self.out.line(f"{INDENT}stopped at --max-insns {self.limit:,} before the guest "
                          f"halted: {where}{post}")
            return None
        if reason == "triple-fault":
            self.out.line(f"{INDENT}the guest triple faulted after {count:,} instructions: "
                          f"{where}{post}")
            return "the guest triple faulted" + (f": {detail}" if detail else "")
        if reason == "exception":
            self.out.line(f"{INDENT}a guest exception could not be delivered after "
                          f"{count:,} instructions: {where}")
            return f"guest exception not delivered: {detail}"
        if reason == "internal-error":
            self.out.line(f"{INDENT}pysev stopped with an internal error after {count:,} "
                          f"instructions: {where}")
            return f"internal error in pysev: {detail}"
        self.out.line(f"{INDENT}the run ended ({reason}) after {count:,} instructions: {where}")
        return None

