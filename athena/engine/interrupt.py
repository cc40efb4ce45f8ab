"""Blocking network calls that a node can abandon promptly when the run is stopped.

A thread blocked in ``connect()``/``recv()``/``send()`` is not woken on Linux when another
thread ``close()``\\s the socket (it waits for its own timeout), so closing an HTTP client
from a watchdog does not abort a request.  ``shutdown()`` does wake it.  Hence:

* :class:`SocketCanceller` keeps a ``dup()`` of every socket a transport opens: passed as
  ``pinned_transport(target, dial=canceller.connect)`` (:mod:`athena.engine.netguard`), it
  opens each socket itself and registers it *before* ``connect()``.
  :meth:`SocketCanceller.cancel` shuts them down, which wakes whatever is blocked on them
  (connecting, a TLS handshake, waiting for headers or body, uploading).  Owning the
  duplicate descriptors means a cancel can never hit an unrelated socket that reused a
  closed descriptor number.
* :func:`run_interruptible` runs the blocking work in a helper thread while the calling
  (node) thread polls ``should_stop()`` and the deadline; on either it cancels the sockets,
  joins the helper and raises.  The work is never re-issued: a request is sent once.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Iterable, TypeVar

import httpcore

from athena.engine.errors import StopRequested

try:  # the stream httpcore's SyncBackend wraps a connected socket in
    from httpcore._backends.sync import SyncStream as _SyncStream
except ImportError:  # pragma: no cover - another httpcore: register right after connect()
    _SyncStream = None  # type: ignore[assignment,misc]

__all__ = ["JOIN_SECONDS", "STOP_POLL_SECONDS", "Cancelled", "SocketCanceller",
           "run_interruptible"]

T = TypeVar("T")

# should_stop() may be a Redis round trip (the worker caches it for a few ms): poll modestly.
STOP_POLL_SECONDS = 0.1
# After a cancel the helper ends within milliseconds; this only bounds a pathological case.
JOIN_SECONDS = 2.0


class Cancelled(OSError):
    """A socket was about to be opened for a canceller that was already cancelled/closed."""


class SocketCanceller:
    """Thread-safe set of duplicated socket handles that :meth:`cancel` shuts down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: list[socket.socket] = []
        self._cancelled = False
        self._closed = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def watch(self, sock: socket.socket) -> None:
        """Make ``sock`` cancellable; raise :class:`Cancelled` if it is too late for that."""
        with self._lock:
            if self._cancelled or self._closed:
                raise Cancelled("the request was cancelled")
            self._handles.append(sock.dup())

    def cancel(self) -> None:
        """Shut down every watched socket (idempotent); later :meth:`watch` calls fail."""
        with self._lock:
            self._cancelled = True
            for handle in self._handles:
                try:
                    handle.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # never connected, or already gone

    def connect(self, address: str, port: int, timeout: float | None = None,
                local_address: str | None = None,
                socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        """``httpcore.SyncBackend.connect_tcp`` for one numeric ``address``, cancellable.

        Like ``socket.create_connection`` (which the SyncBackend uses) for one address, but
        the socket is watched before the possibly long ``connect()``.
        """
        if _SyncStream is None:  # pragma: no cover
            stream = httpcore.SyncBackend().connect_tcp(address, port, timeout, local_address,
                                                        socket_options)
            try:
                self.watch(stream.get_extra_info("socket"))
            except OSError as exc:
                stream.close()
                raise httpcore.ConnectError(str(exc)) from exc
            return stream
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            self.watch(sock)
            sock.settimeout(timeout)
            if local_address is not None:
                sock.bind((local_address, 0))
            sock.connect((address, port))
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return _SyncStream(sock)

    def close(self) -> None:
        """Release the duplicated handles (idempotent).  Call once the sockets are closed."""
        with self._lock:
            self._closed = True
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()


def run_interruptible(work: Callable[[], T], canceller: SocketCanceller, *,
                      should_stop: Callable[[], bool], deadline: float,
                      on_deadline: Callable[[], BaseException],
                      poll: float = STOP_POLL_SECONDS, name: str = "athena-io") -> T:
    """Run ``work()`` in a helper thread; return its result or re-raise its exception.

    Every ``poll`` seconds the calling thread checks ``should_stop()`` (raise
    :class:`StopRequested`) and ``time.monotonic() >= deadline`` (raise ``on_deadline()``);
    both first cancel the sockets and wait for the helper, which then ends at once.
    ``work`` must watch its sockets with ``canceller``; the canceller is closed here.
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def helper() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=helper, name=name, daemon=True)
    thread.start()
    try:
        while not done.wait(max(0.0, min(poll, deadline - time.monotonic()))):
            if should_stop():
                canceller.cancel()
                raise StopRequested()
            if time.monotonic() >= deadline:
                canceller.cancel()
                raise on_deadline()
    finally:
        if not done.is_set():  # stopped, timed out, or should_stop() itself raised
            canceller.cancel()
        thread.join(JOIN_SECONDS)
        canceller.close()
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, BaseException)
        raise error
    return outcome["result"]  # type: ignore[return-value]
