"""The client side of the WebSocket wire format (RFC 6455) for :mod:`bench.wsreader`: the
HTTP upgrade handshake on a raw socket (no extensions, so no permessage-deflate), masked
client control frames, and :class:`Conn`, a minimal incremental frame parser for one
non-blocking socket (fragmented messages, ping -> pong, close)."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import urllib.parse

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


# ---------------------------------------------------------------------------- wire format
def masked_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A client control frame (FIN set, payload <= 125 bytes by RFC 6455): clients MUST mask."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload[:125]))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(body)) + mask + body


def handshake(url: str, timeout: float) -> tuple[socket.socket, bytes]:
    """Open ``url`` (ws://host:port/path?query) and upgrade it; no extensions are offered, so no
    permessage-deflate. Returns the non-blocking socket and any bytes read past the 101 header
    (the snapshot often arrives in the same segment)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// is supported: {url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
                     + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
                     + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"handshake: connection closed after {data[:200]!r}")
            data += chunk
            if len(data) > 65536:
                raise ConnectionError("handshake: header too long")
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split(" ")[1:2] != ["101"]:
            raise ConnectionError(f"handshake refused: {lines[0]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise ConnectionError("handshake: bad Sec-WebSocket-Accept")
        if headers.get("sec-websocket-extensions"):
            raise ConnectionError(f"handshake: unexpected extension {headers['sec-websocket-extensions']!r}")
        sock.setblocking(False)
        return sock, rest
    except BaseException:
        sock.close()
        raise


class Conn:
    """One socket's parser state: undecoded bytes, a fragmented message being assembled, and
    the messages (receipt time, payload) read so far."""

    __slots__ = ("sock", "buffer", "fragments", "raw", "last_seq", "finished", "error", "open")

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.buffer = leftover
        self.fragments: list[bytes] | None = None
        self.raw: list[tuple[float, bytes]] = []
        self.last_seq: int | None = None  # set by the snapshot (the first message)
        self.finished: set[str] = set()
        self.error: str | None = None
        self.open = True

    def feed(self) -> list[bytes]:
        """Parse every complete frame in ``buffer``; answer pings; return completed messages.
        A close frame (or a protocol error) marks the connection as not open."""
        data, pos, end = self.buffer, 0, len(self.buffer)
        out: list[bytes] = []
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, header = b1 & 0x7F, 2
            if b1 & 0x80:
                self.fail("masked server frame")
                break
            if length == 126:
                if end - pos < 4:
                    break
                length, header = struct.unpack_from("!H", data, pos + 2)[0], 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, header = struct.unpack_from("!Q", data, pos + 2)[0], 10
            if end - pos < header + length:
                break
            payload = data[pos + header:pos + header + length]
            pos += header + length
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in (OP_TEXT, OP_BINARY):
                if fin:
                    out.append(payload)
                else:
                    self.fragments = [payload]
            elif opcode == OP_CONT:
                if self.fragments is None:
                    self.fail("continuation without a start frame")
                    break
                self.fragments.append(payload)
                if fin:
                    out.append(b"".join(self.fragments))
                    self.fragments = None
            elif opcode == OP_PING:
                self.send(masked_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else None
                self.fail(f"closed by the server: code {code} {payload[2:120]!r}")
                break
            # OP_PONG and unknown control frames: ignored
        self.buffer = data[pos:] if pos else data
        return out

    def send(self, frame: bytes) -> None:
        """A control frame: a few bytes into a send buffer we never fill, so no wait."""
        try:
            if self.sock.send(frame) != len(frame):
                self.fail("send: short write")
        except OSError as exc:
            self.fail(f"send: {exc!r}")

    def fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.open = False

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.sock.send(masked_frame(OP_CLOSE, struct.pack("!H", 1000)))
            except OSError:
                pass
        self.sock.close()
