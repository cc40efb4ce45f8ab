"""How relayed events reach a socket; the one module that may touch simple-websocket's internals.

Two writers, chosen per socket by ``WS_DIRECT_WRITE`` (``ATHENA_WS_DIRECT_WRITE``, on by default;
see docs/websocket.md for the measurement behind the default):

- :class:`SendWriter` (off): the library's public ``Server.send()``, one message at a time, always
  from the socket's own thread. simple-websocket has no lock around ``send()``, so no other
  thread of ours ever writes to the socket.
- :class:`FrameWriter` (on): a batch of events goes out in one write of the frames made once per
  process (:attr:`SharedEvent.frame`) while the connection frames messages plainly (no
  permessage-deflate); and while the socket's thread is parked, the hub thread writes to the
  socket itself, without blocking (``MSG_DONTWAIT``, see ``Subscription.direct``). It uses the
  library's private ``ws.sock`` (the TCP socket) and ``ws.ws`` (the wsproto connection), as
  simple-websocket 1.x has them; ``tests/realtime`` runs over the installed library.
"""
from __future__ import annotations

import socket
from typing import Any

from simple_websocket import ConnectionClosed
from wsproto.events import TextMessage

from athena.websocket.frames import SharedEvent

SENT, PARTIAL, DECLINED = "sent", "partial", "declined"  # outcomes of send_now


class SendWriter:
    """``ws.send()`` per message, from the socket's own thread: the public API of the library."""

    direct = False  # the hub thread never writes for it

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send_now(self, events: list[SharedEvent]) -> str:
        return DECLINED

    def send(self, events: list[SharedEvent]) -> None:
        for event in events:
            self.ws.send(event.text)


class FrameWriter:
    """Sends events to a flask-sock (simple_websocket) socket, each batch in one write. While the
    connection frames messages plainly (seen on its first message: no extension such as
    permessage-deflate), the events' shared frames go out as they are, framed once per process."""

    direct = True  # the hub thread may write to it while its thread is parked (send_now)

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.plain: bool | None = None
        self.unsent = b""  # the rest of a write the hub thread began (send_now): goes out first

    def send_now(self, events: list[SharedEvent]) -> str:
        """Hub thread, socket thread parked: write the shared frames without blocking. "sent";
        "partial" (the rest is in ``unsent`` for the socket thread); "declined" (nothing written:
        not a plain socket yet, or its buffer is full)."""
        if self.plain is not True or self.unsent:
            return DECLINED
        if not events:
            return SENT
        data = events[0].frame if len(events) == 1 else b"".join(event.frame for event in events)
        try:
            sent = self.ws.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return DECLINED
        if sent < len(data):
            self.unsent = data[sent:]
            return PARTIAL
        return SENT

    def send(self, events: list[SharedEvent]) -> None:
        ws = self.ws
        if self.unsent:
            data, self.unsent = self.unsent, b""
            ws.sock.sendall(data)
        if not events:
            return
        if not ws.connected:
            raise ConnectionClosed(ws.close_reason, ws.close_message)
        chunks = []
        for event in events:
            if self.plain:
                chunks.append(event.frame)
                continue
            framed = ws.ws.send(TextMessage(data=event.text))
            if self.plain is None:
                self.plain = framed == event.frame
            chunks.append(framed)
        ws.sock.sendall(chunks[0] if len(chunks) == 1 else b"".join(chunks))


def writer_for(ws: Any, direct_write: bool) -> SendWriter | FrameWriter:
    """The writer of ``ws``: :class:`FrameWriter` when ``direct_write`` is on and ``ws`` is a
    simple-websocket socket (it has ``ws`` and ``sock``), else :class:`SendWriter`."""
    if direct_write and hasattr(ws, "ws") and hasattr(ws, "sock"):
        return FrameWriter(ws)
    return SendWriter(ws)
