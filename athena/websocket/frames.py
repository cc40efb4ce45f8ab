"""The wire form of WebSocket messages: JSON text, and the frame a server sends for it. A
:class:`SharedEvent` makes both once for every socket that relays the same event (the frame is
written as it is only with ``WS_DIRECT_WRITE`` on: :mod:`athena.websocket.writer`)."""
from __future__ import annotations

import json
import struct
from typing import Any


def encode(message: dict[str, Any]) -> str:
    """The wire form of a message (every WebSocket message goes through this)."""
    return json.dumps(message, separators=(",", ":"), default=str)


def text_frame(text: str) -> bytes:
    """``text`` as one unmasked, unfragmented WebSocket text frame (what a server sends when no
    extension such as permessage-deflate was negotiated)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class SharedEvent:
    """One decoded log entry, shared read-only by every socket that relays it. Its JSON text and
    its frame are made on first use and then reused (a racing double encode is harmless)."""

    __slots__ = ("seq", "data", "_text", "_frame")

    def __init__(self, data: dict[str, Any]) -> None:
        self.seq: int = data["seq"]
        self.data = data
        self._text: str | None = None
        self._frame: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = encode(self.data)
        return self._text

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.text)
        return self._frame
