"""Calls over Unix-domain sockets: length-prefixed frames, one pooled connection per thread.

The channel carries opaque bytes; `variants.rpc` puts the contracts into them (msgpack), so
this module knows nothing about the shop and can be benchmarked on its own:

    server = IpcServer(path, Dispatcher("inventory", impl, Codec("msgpack")).handle)
    server.start()
    proxy = make_proxy("inventory", UdsTransport(path), Codec("msgpack"))

Wire format (big-endian): a request is `u32 length, u8 method length, method, args` and an
answer `u32 length, u8 ok, body`, where `length` counts the bytes after the 5-byte header.
Each frame goes out in one `sendall` and usually arrives in one `recv`: no small separate
writes to stall on. Calls on one connection strictly alternate, so frames never interleave.

A server runs one thread per connection (each connection is one client thread's, so a
domain call that blocks, e.g. on an fsync, holds up only its caller). A client keeps one
connection per thread and per server, opened lazily with a connect timeout; every call has
a read timeout. Any failure closes that connection and raises `rpc.TransportError`, which the
proxy turns into `Unavailable`: a dead server fails fast (the socket refuses or is missing),
a slow one after its timeout. A pooled connection found dead on send (the server restarted
since) is replaced and the call sent once more: a request that was never delivered is safe
to resend; one that was delivered is never resent.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from variants.rpc import RECV_CHUNK, TransportError, kernel_timeouts

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], tuple[bool, bytes]]

HEADER = struct.Struct("!IB")
MAX_FRAME = 64 * 1024 * 1024
PING = "__ping__"
"""Answered by the server itself, never passed to the handler: a liveness check."""

_STALE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


class PeerClosed(ConnectionError):
    """The other side closed the connection between frames."""


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One frame: (the header's byte, the body). Raises PeerClosed at a clean end of stream."""
    data = sock.recv(RECV_CHUNK)
    if not data:
        raise PeerClosed("connection closed")
    while len(data) < HEADER.size:
        more = sock.recv(RECV_CHUNK)
        if not more:
            raise ConnectionError("connection closed inside a frame header")
        data += more
    length, small = HEADER.unpack_from(data)
    if length > MAX_FRAME:
        raise ConnectionError(f"frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    total = HEADER.size + length
    if len(data) >= total:
        return small, data[HEADER.size : total]
    buf = bytearray(total)
    buf[: len(data)] = data
    view = memoryview(buf)
    got = len(data)
    while got < total:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("connection closed inside a frame")
        got += n
    return small, bytes(view[HEADER.size :])


def request_frame(method: str, args: bytes) -> bytes:
    name = method.encode()
    return b"".join((HEADER.pack(len(name) + len(args), len(name)), name, args))


def answer_frame(ok: bool, body: bytes) -> bytes:
    return HEADER.pack(len(body), 1 if ok else 0) + body


def listen_unix(path: Path, backlog: int = 1024) -> socket.socket:
    """A listening Unix socket at `path`, readable only by this user."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket file left by a process that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


ACCEPT_POLL_S = 0.5


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the socket file at `path`, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class IpcServer:
    """Serves `handler(method, args) -> (ok, body)` on a Unix socket, a thread per connection."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        backlog: int = 1024,
        listening: socket.socket | None = None,
    ) -> None:
        """Bind `path`, or accept on `listening` (bound by the postmaster, shared by backends)."""
        self.path = Path(path)
        self.handler = handler
        self._owned = listening is None
        if listening is not None:
            # Shared with sibling processes: never shut down (that would stop theirs too);
            # accept wakes up now and then to notice a stop instead.
            listening.settimeout(ACCEPT_POLL_S)
            self._sock = listening
        else:
            self._sock = listen_unix(self.path, backlog)
        self._bound = _identity(self.path) if self._owned else None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._conns: set[socket.socket] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.accepted = 0
        """Connections accepted so far (a pooled client opens one per thread)."""

    def start(self) -> threading.Thread:
        """Accept connections in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="ipc-accept", daemon=True)
        self._thread.start()
        return self._thread

    def serve_forever(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping:
                    return
                log.exception("accept failed on %s", self.path)
                time.sleep(0.1)
                continue
            with self._lock:
                if self._stopping:
                    conn.close()
                    return
                self._conns.add(conn)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), name="ipc-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        handler = self.handler
        try:
            while True:
                name_len, body = recv_frame(conn)
                with self._lock:
                    if self._stopping:
                        return  # unanswered: the client sees the connection close
                    self._inflight += 1
                try:
                    method = body[:name_len].decode()
                    if method == PING:
                        ok, result = True, b"pong"
                    else:
                        ok, result = handler(method, body[name_len:])
                    conn.sendall(answer_frame(ok, result))
                finally:
                    with self._lock:
                        self._inflight -= 1
                        if self._inflight == 0:
                            self._idle.notify_all()
        except PeerClosed:
            pass
        except OSError as exc:
            if not self._stopping:
                log.debug("connection on %s ended: %s", self.path, exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    @property
    def inflight(self) -> int:
        with self._lock:
            return self._inflight

    def stop(self, grace_s: float = 5.0) -> bool:
        """Stop accepting, let calls in progress finish (up to `grace_s`), close every connection.

        Returns False if calls were still running when the grace period ran out.
        """
        with self._lock:
            self._stopping = True
        if self._owned:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._sock.close()
        if self._owned and _identity(self.path) == self._bound:
            # Not if a replacement (an engine swap) has bound the path since: it is theirs.
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        deadline = time.monotonic() + grace_s
        with self._lock:
            while self._inflight and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            drained = self._inflight == 0
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return drained


class UdsTransport:
    """The client side, an `rpc.Transport`: one lazily opened connection per calling thread."""

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        connect_timeout_s: float = 0.5,
        call_timeout_s: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.name = name or Path(path).stem
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self._local = threading.local()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout_s)
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or exc
            raise TransportError(f"cannot connect to {self.name}: {reason}") from exc
        # Blocking mode with kernel-side timeouts: a Python-level timeout would add a poll()
        # before every recv() (a quarter of a round trip); the kernel's gives EAGAIN instead.
        sock.settimeout(None)
        kernel_timeouts(sock, self.call_timeout_s)
        return sock

    def _drop(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()

    def __call__(self, method: str, args: bytes) -> tuple[bool, bytes]:
        frame = request_frame(method, args)
        sock: socket.socket | None = getattr(self._local, "sock", None)
        pooled = sock is not None
        if sock is None:
            sock = self._local.sock = self._connect()
        try:
            sock.sendall(frame)
        except OSError as exc:
            self._drop()
            if not pooled or exc.errno not in _STALE:
                raise TransportError(f"cannot send to {self.name}: {exc}") from exc
            sock = self._local.sock = self._connect()  # the server restarted: one more try
            try:
                sock.sendall(frame)
            except OSError as exc2:
                self._drop()
                raise TransportError(f"cannot send to {self.name}: {exc2}") from exc2
        try:
            ok, body = recv_frame(sock)
        except (TimeoutError, BlockingIOError) as exc:
            self._drop()  # a late answer would be read as the next call's
            raise TransportError(
                f"{self.name} did not answer {method} within {self.call_timeout_s:g} s"
            ) from exc
        except OSError as exc:
            self._drop()
            raise TransportError(f"{self.name} closed the connection during {method}") from exc
        return ok == 1, body

    def ping(self) -> float:
        """Seconds for one round trip that the server answers itself."""
        started = time.perf_counter()
        self(PING, b"")
        return time.perf_counter() - started

    def close(self) -> None:
        """Close the calling thread's connection (others close when their threads end)."""
        self._drop()
