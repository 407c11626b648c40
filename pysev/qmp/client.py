"""A small synchronous QMP client over a UNIX socket: what a management tool or a
remote guest owner uses to talk to ``-qmp unix:PATH,server=on,wait=off``.

    with QMPClient("/tmp/pysev.sock") as qmp:      # greeting + qmp_capabilities
        info = qmp.execute("query-sev")
        qmp.execute("sev-inject-launch-secret", **{"packet-header": h, "secret": s})
        qmp.execute("quit")
        qmp.events                                  # [{"event": "SHUTDOWN", ...}]

Each command is sent with an id and the reply carrying that id is its answer;
events that arrive in between are kept in :attr:`events` (in order).  An error
reply raises :class:`QMPClientError` with QMP's error class and description; a
broken or silent connection raises :class:`QMPConnectionError`.
"""

import json
import socket
import time

READ_SIZE = 64 * 1024
MAX_LINE = 16 << 20                   # bytes of one message from the server


class QMPClientError(Exception):
    """An error reply: ``error_class`` ("GenericError", ...) and ``desc``."""

    def __init__(self, error_class, desc):
        super().__init__(f"{error_class}: {desc}")
        self.error_class, self.desc = error_class, desc


class QMPConnectionError(QMPClientError):
    """The connection failed, closed, timed out or carried something that is not QMP."""

    def __init__(self, desc):
        super().__init__("ConnectionError", desc)


class QMPClient:
    """Connect to the QMP socket at *path*, read the greeting and negotiate.

    *timeout* (seconds, None for none) bounds the wait for each message.
    """

    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self.events = []
        self._buf = bytearray()
        self._next_id = 1
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(path)
            except OSError as exc:
                raise QMPConnectionError(f"cannot connect to '{path}': "
                                         f"{exc.strerror or exc}") from None
            greeting = self._recv(self._deadline())
            if not isinstance(greeting.get("QMP"), dict):
                raise QMPConnectionError(f"no QMP greeting from '{path}'")
            self.greeting = greeting["QMP"]
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    # ---- messages -----------------------------------------------------------------------
    def _recv(self, deadline=None):
        """The next message from the server (a dict)."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    raise QMPConnectionError(f"the server sent something that is not JSON: "
                                             f"{line[:80]!r}") from None
                if not isinstance(message, dict):
                    raise QMPConnectionError("the server sent a JSON value that is not an object")
                return message
            if len(self._buf) > MAX_LINE:
                raise QMPConnectionError("the server sent a message that is too long")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QMPConnectionError("no reply from the QMP server in time")
                self._sock.settimeout(left)
            else:
                self._sock.settimeout(None)
            try:
                data = self._sock.recv(READ_SIZE)
            except socket.timeout:
                raise QMPConnectionError("no reply from the QMP server in time") from None
            except OSError as exc:
                raise QMPConnectionError(f"connection lost: {exc.strerror or exc}") from None
            if not data:
                raise QMPConnectionError("the QMP server closed the connection")
            self._buf += data

    def _deadline(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else time.monotonic() + timeout

    def execute(self, name, **arguments):
        """Run the command *name*; returns its "return" value or raises QMPClientError.

        Arguments with dashes go through a dict: ``execute("x", **{"cpu-index": 0})``.
        """
        ident = self._next_id
        self._next_id += 1
        message = {"execute": name, "id": ident}
        if arguments:
            message["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise QMPConnectionError(f"cannot send '{name}': {exc.strerror or exc}") from None
        deadline = self._deadline()
        while True:
            reply = self._recv(deadline)
            if "event" in reply:
                self.events.append(reply)
                continue
            if reply.get("id") != ident:
                if "error" in reply and "id" not in reply:
                    error = reply["error"]
                    raise QMPClientError(error.get("class", "GenericError"), error.get("desc", ""))
                continue                      # a reply to someone else's id: not ours
            if "error" in reply:
                error = reply["error"]
                raise QMPClientError(error.get("class", "GenericError"), error.get("desc", ""))
            if "return" not in reply:
                raise QMPConnectionError(f"a reply to '{name}' without return or error")
            return reply["return"]

    def wait_event(self, name, timeout=None):
        """The first event called *name* not taken yet (it is removed from
        :attr:`events`), waiting for it when none came."""
        deadline = self._deadline(timeout)
        while True:
            for n, event in enumerate(self.events):
                if event.get("event") == name:
                    return self.events.pop(n)
            message = self._recv(deadline)
            if "event" in message:
                self.events.append(message)

    def take_events(self):
        """The events received so far, in order; the list is emptied."""
        events, self.events = self.events, []
        return events

    # ---- life cycle -----------------------------------------------------------------------
    def close(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["QMPClient", "QMPClientError", "QMPConnectionError"]
