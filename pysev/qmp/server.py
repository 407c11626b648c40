"""The QMP server: QEMU's monitor protocol on a UNIX socket, over pysev.qmp.commands.

    machine = Machine.from_args(["-bios", "fw.bin", "-S",
                                 "-qmp", "unix:/tmp/pysev.sock,server=on,wait=off"])
    machine.run()          # serves QMP until the command quit

The protocol is QEMU's (docs/interop/qmp-spec in QEMU): on connection the
server sends a greeting; the client negotiates capabilities with
``qmp_capabilities`` (pysev offers none, so no out-of-band execution); then each
``{"execute": NAME, "arguments": {...}, "id": ID}`` gets ``{"return": ...}`` or
``{"error": {"class": ..., "desc": ...}}`` carrying the same id, and events
(STOP, RESUME, RESET, SHUTDOWN) go to every client that has negotiated.
Messages are sent as one line each, ended by CR LF.

Threads: the server runs an asyncio loop in a thread of its own and never
touches the machine.  Commands are queued to the machine thread with
Machine.submit() and run between translated blocks (see Machine.run); the
reply is sent after the events the command emitted, as QEMU orders them
(RESUME before the return of ``cont``, SHUTDOWN before the return of ``quit``).
A client's commands run one at a time, in order; clients are independent:
one that sends garbage, too much, or disconnects mid-message affects only
itself.

Input: a byte stream of JSON texts, split the way QEMU's JSON streamer splits
them (by bracket depth, outside strings).  A byte 0xFF discards a partial
message, as in QEMU.  A message over MAX_MESSAGE bytes (1 MiB) or nested more
than MAX_NESTING deep gets one error reply; the rest of it is skipped and the
connection goes on.
"""

import asyncio
import errno
import json
import math
import os
import re
import socket
import stat
import threading

from .commands import QMPError, execute, greeting_version

MAX_MESSAGE = 1 << 20                 # bytes of one JSON message
MAX_NESTING = 512                     # JSON nesting depth (QEMU allows 1024)
MAX_BACKLOG = 16 << 20                # unsent bytes to one client before it is dropped
READ_SIZE = 64 * 1024
CLOSE_TIMEOUT = 2.0                   # seconds to flush the clients at close

# ---- -qmp option ----------------------------------------------------------------------------

_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")


def _split_opts(text):
    """Split QEMU option text on commas; ",," is a literal comma."""
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if text.startswith(",,", i):
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def parse_qmp_option(text):
    """``-qmp unix:PATH,server=on,wait=off`` (or ``unix:PATH,server,nowait``) -> PATH.

    Raises ValueError with a message for anything pysev does not serve.
    """
    usage = "use -qmp unix:PATH,server=on,wait=off"
    kind, colon, rest = text.partition(":")
    if not colon or kind != "unix":
        raise ValueError(f"unsupported monitor address '{text}': pysev serves QMP on a UNIX "
                         f"socket only ({usage})")
    path, *opts = _split_opts(rest)
    if not path:
        raise ValueError(f"missing socket path in '{text}' ({usage})")
    server = wait = None
    for opt in opts:
        key, eq, value = opt.partition("=")
        if key in ("server", "wait") and not eq:
            value = "on"
        elif key == "nowait" and not eq:
            key, value = "wait", "off"
        elif key not in ("server", "wait"):
            raise ValueError(f"unsupported option '{opt}' in '{text}' ({usage})")
        value = value.lower()
        if value not in _TRUE + _FALSE:
            raise ValueError(f"option '{key}' expects on or off, not '{value}'")
        if key == "server":
            server = value in _TRUE
        else:
            wait = value in _TRUE
    if not server:
        raise ValueError(f"pysev serves QMP as the server only: add server=on ({usage})")
    if wait is None or wait:
        raise ValueError("wait=on (QEMU's default: wait for a client before starting) is not "
                         f"supported: add wait=off, and -S to start paused ({usage})")
    return path


# ---- splitting the input into JSON messages -------------------------------------------------

_IN_STRUCT = re.compile(rb'[\[\]{}"\xff]')
_IN_STRING = re.compile(rb'["\\\xff]')
_SCALAR_END = re.compile(rb'[ \t\r\n\[\]{}",:\xff]')
_WHITESPACE = b" \t\r\n"
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _object_pairs(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError("duplicate key")
        obj[key] = value
    return obj


def _reject_constant(name):
    raise ValueError(f"invalid keyword '{name}'")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number '{text}' out of range")
    return value


def decode_message(raw):
    """One complete JSON text (bytes) -> the value, or raise ValueError with QEMU's message."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("JSON parse error, invalid UTF-8 sequence") from None
    try:
        return json.loads(text, object_pairs_hook=_object_pairs,
                          parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nesting depth limit exceeded") from None
    except json.JSONDecodeError as exc:
        word = text.strip()
        if _KEYWORD.match(word):
            raise ValueError(f"JSON parse error, invalid keyword '{word}'") from None
        msg = exc.msg[:1].lower() + exc.msg[1:]
        raise ValueError(f"JSON parse error, {msg}") from None
    except ValueError as exc:
        raise ValueError(f"JSON parse error, {exc}") from None


class JSONSplitter:
    """Cuts a byte stream into JSON messages.

    feed(data) returns a list of ("message", value) and ("error", description)
    items in stream order.  A message ends when its outermost bracket closes,
    or, for a top-level scalar, at the first byte that cannot continue it.
    """

    def __init__(self, max_size=MAX_MESSAGE, max_depth=MAX_NESTING):
        self.max_size, self.max_depth = max_size, max_depth
        self._reset()

    def _reset(self):
        self.buf = bytearray()
        self.size = 0                  # bytes of the current message, skipped ones included
        self.depth = 0
        self.in_string = self.escape = self.scalar = False
        self.skipping = False          # over a limit: drop the rest of this message

    @property
    def pending(self):
        """True inside a partial message."""
        return bool(self.depth or self.in_string or self.scalar)

    def _take(self, data, start, end, out):
        """Add data[start:end] to the current message, minding the size limit."""
        if end <= start:
            return
        self.size += end - start
        if self.skipping:
            return
        if self.size > self.max_size:
            self.skipping = True
            self.buf = bytearray()
            out.append(("error", "JSON token size limit exceeded"))
            return
        self.buf += data[start:end]

    def _complete(self, out):
        if not self.skipping:
            try:
                out.append(("message", decode_message(bytes(self.buf))))
            except ValueError as exc:
                out.append(("error", str(exc)))
        self._reset()

    def _stray_ff(self, out):
        # 0xFF never occurs in UTF-8 JSON: QEMU drops the partial message and reports it
        self._reset()
        out.append(("error", "JSON parse error, stray '\ufffd'"))

    def _to_delimiter(self, data, i, pattern, out):
        """Take bytes up to and including the next one `pattern` finds.

        Returns (next index, that byte), or (next index, None) when the data ran
        out or a stray 0xFF threw the partial message away."""
        m = pattern.search(data, i)
        if m is None:
            self._take(data, i, len(data), out)
            return len(data), None
        j = m.start()
        if data[j] == 0xFF:
            self._stray_ff(out)
            return j + 1, None
        self._take(data, i, j + 1, out)
        return j + 1, data[j]

    def feed(self, data):
        out = []
        data = bytes(data)
        i, n = 0, len(data)
        while i < n:
            if self.escape:
                if data[i] == 0xFF:
                    self._stray_ff(out)
                    i += 1
                    continue
                self.escape = False
                self._take(data, i, i + 1, out)
                i += 1
            elif self.in_string:
                i, c = self._to_delimiter(data, i, _IN_STRING, out)
                if c is None:
                    continue
                if c == 0x5C:                            # backslash
                    self.escape = True
                else:                                    # closing quote
                    self.in_string = False
                    if self.depth == 0:
                        self._complete(out)
            elif self.depth:
                i, c = self._to_delimiter(data, i, _IN_STRUCT, out)
                if c is None:
                    continue
                if c in b"[{":
                    self.depth += 1
                    if self.depth > self.max_depth and not self.skipping:
                        self.skipping = True
                        self.buf = bytearray()
                        out.append(("error", "JSON nesting depth limit exceeded"))
                elif c in b"]}":
                    self.depth -= 1
                    if self.depth == 0:
                        self._complete(out)
                else:
                    self.in_string = True
            elif self.scalar:
                m = _SCALAR_END.search(data, i)
                if m is None:
                    self._take(data, i, n, out)
                    break
                j = m.start()
                self._take(data, i, j, out)
                i = j                                    # the delimiter starts the next item
                self._complete(out)
            else:
                c = data[i]
                if c in _WHITESPACE:
                    i += 1
                elif c == 0xFF:
                    self._stray_ff(out)
                    i += 1
                elif c in b"[{":
                    self.depth = 1
                    self._take(data, i, i + 1, out)
                    i += 1
                elif c == 0x22:                          # a top-level string
                    self.in_string = True
                    self._take(data, i, i + 1, out)
                    i += 1
                elif c in b"]}":
                    out.append(("error", "JSON parse error, expecting value"))
                    i += 1
                else:
                    self.scalar = True
                    self._take(data, i, i + 1, out)
                    i += 1
        return out


# ---- the server -----------------------------------------------------------------------------

def _error(desc, error_class="GenericError"):
    return {"class": error_class, "desc": desc}


def encode(message):
    """One QMP message on the wire: compact JSON (ASCII), CR LF."""
    return json.dumps(message, separators=(", ", ": "), allow_nan=False).encode() + b"\r\n"


def listen_unix(path, backlog=16):
    """A listening UNIX socket at *path*, created with mode 0600 (under umask 0177, so
    it is never wider, not even for a moment).  An old socket there is replaced, as
    QEMU does; any other file is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "a file that is not a socket exists there")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Client:
    """One connection: its writer and whether it has negotiated capabilities."""

    def __init__(self, writer):
        self.writer = writer
        self.negotiated = False
        self.closed = False
        self.task = asyncio.current_task()

    def send_raw(self, data):
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        self.writer.write(data)
        if transport.get_write_buffer_size() > MAX_BACKLOG:
            self.closed = True                   # it does not read: drop it, not the machine
            transport.abort()

    def send(self, message):
        try:
            data = encode(message)
        except (TypeError, ValueError) as exc:
            data = encode({"error": _error(f"internal error in pysev: unserializable reply "
                                           f"({exc})")})
        self.send_raw(data)


class QMPServer:
    """QMP on a UNIX socket for *machine*, served from a background thread.

    Created by the machine for ``-qmp``; close() stops it (Machine.close calls it).
    """

    def __init__(self, machine, path, max_message=MAX_MESSAGE):
        self.machine = machine
        self.path = os.fspath(path)
        self.max_message = max_message
        self._clients = set()
        self._closed = False
        self._sock = listen_unix(self.path)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(target=self._thread_main, name="pysev-qmp",
                                        daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._unlink()
            raise self._start_error
        machine.event_listeners.append(self._on_event)

    # ---- life cycle ---------------------------------------------------------------------
    def _thread_main(self):
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_unix_server(self._serve_client, sock=self._sock))
        except BaseException as exc:             # pragma: no cover - setup failure
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    def close(self):
        """Stop accepting, flush what the clients still have to receive (SHUTDOWN),
        disconnect them, end the thread and remove the socket file."""
        if self._closed:
            return
        self._closed = True
        try:
            self.machine.event_listeners.remove(self._on_event)
        except ValueError:
            pass
        try:
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            done.result(CLOSE_TIMEOUT + 1)
        except Exception:
            pass
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:
            pass
        self._thread.join(CLOSE_TIMEOUT + 1)
        self._unlink()

    def _unlink(self):
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    async def _shutdown(self):
        self._server.close()
        clients = list(self._clients)
        for client in clients:
            if not client.closed:
                try:
                    await asyncio.wait_for(client.writer.drain(), CLOSE_TIMEOUT)
                except (Exception, asyncio.TimeoutError):
                    pass
            client.closed = True
            transport = client.writer.transport
            if transport.get_write_buffer_size():
                transport.abort()                # it does not read: do not wait for it
            else:
                client.writer.close()            # its reader sees the end and returns
        tasks = [c.task for c in clients if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()                        # one may wait for a command: it ends too
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- events ---------------------------------------------------------------------------
    def _on_event(self, event):
        """A machine event (any thread): to every negotiated client, after what is queued."""
        data = encode(event)
        try:
            self._loop.call_soon_threadsafe(self._broadcast, data)
        except RuntimeError:                     # the loop is closed
            pass

    def _broadcast(self, data):
        for client in list(self._clients):
            if client.negotiated:
                client.send_raw(data)

    # ---- one client ---------------------------------------------------------------------
    def greeting(self):
        return {"QMP": {"version": greeting_version(), "capabilities": []}}

    async def _serve_client(self, reader, writer):
        client = _Client(writer)
        self._clients.add(client)
        splitter = JSONSplitter(self.max_message)
        try:
            client.send(self.greeting())
            while not client.closed:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                for kind, value in splitter.feed(data):
                    if client.closed:
                        break
                    if kind == "error":
                        client.send({"error": _error(value)})
                    else:
                        await self._handle(client, value)
                if not client.closed:
                    await writer.drain()
        except (ConnectionError, OSError):
            pass                                 # it went away: only this client ends
        except asyncio.CancelledError:
            pass                                 # the server is closing
        finally:
            client.closed = True
            self._clients.discard(client)
            writer.close()

    async def _handle(self, client, message):
        if not isinstance(message, dict):
            client.send({"error": _error("QMP input must be a JSON object")})
            return
        has_id = "id" in message
        ident = message.get("id")

        def reply_error(desc, error_class="GenericError"):
            reply = {"id": ident} if has_id else {}
            reply["error"] = _error(desc, error_class)
            client.send(reply)

        name = None
        for key, value in message.items():
            if key == "execute":
                if not isinstance(value, str):
                    return reply_error("QMP input member 'execute' must be a string")
                name = value
            elif key == "arguments":
                if not isinstance(value, dict):
                    return reply_error("QMP input member 'arguments' must be an object")
            elif key != "id":
                return reply_error(f"QMP input member '{key}' is unexpected")
        if name is None:
            return reply_error("QMP input lacks member 'execute'")
        arguments = message.get("arguments", {})

        if not client.negotiated:
            if name != "qmp_capabilities":
                return reply_error("Expecting capabilities negotiation with 'qmp_capabilities'",
                                   "CommandNotFound")
            try:
                self._negotiate(arguments)
            except QMPError as exc:
                return reply_error(exc.desc, exc.error_class)
            client.negotiated = True
            self._reply(client, has_id, ident, {}, None)
            return
        if name == "qmp_capabilities":
            return reply_error("Capabilities negotiation is already complete, command ignored",
                               "CommandNotFound")

        # run it on the machine thread; the reply is queued behind the events it emits
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        machine = self.machine

        def done(result, exc):                   # on the machine thread
            try:
                loop.call_soon_threadsafe(self._finish, client, finished, has_id, ident,
                                          result, exc)
            except RuntimeError:                 # the server is gone
                pass
        machine.submit(lambda: execute(machine, name, arguments), done)
        await finished

    @staticmethod
    def _negotiate(arguments):
        for key in arguments:
            if key != "enable":
                raise QMPError(f"Parameter '{key}' is unexpected")
        enable = arguments.get("enable", [])
        if not isinstance(enable, list):
            raise QMPError("Invalid parameter type for 'enable', expected: array")
        for cap in enable:
            if not isinstance(cap, str):
                raise QMPError("Invalid parameter type for 'enable', expected: string")
            if cap != "oob":
                raise QMPError(f"Parameter 'enable' does not accept value '{cap}'")
            raise QMPError(f"Capability '{cap}' not available")

    def _reply(self, client, has_id, ident, result, exc):
        if exc is None:
            reply = {"return": result}
            if has_id:
                reply["id"] = ident
        else:
            if not isinstance(exc, QMPError):
                exc = QMPError(f"internal error in pysev: {type(exc).__name__}: {exc}")
            reply = {"id": ident} if has_id else {}
            reply["error"] = exc.to_json()
        client.send(reply)

    def _finish(self, client, finished, has_id, ident, result, exc):
        self._reply(client, has_id, ident, result, exc)
        if not finished.done():
            finished.set_result(None)
