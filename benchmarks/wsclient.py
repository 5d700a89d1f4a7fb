"""A lean WebSocket client for load generation.

A general-purpose client (``websockets``) spends more CPU per message than
the servers under test, so the load generator would be the bottleneck and
every ratio would drift towards 1. This one is an ``asyncio.Protocol`` that
does only what the benchmarks need:

- an HTTP/1.1 upgrade request written once, the ``101`` status checked;
- frames sent with an all-zero mask, which RFC 6455 allows (the key must be
  present, its value is the client's choice), so masking costs nothing;
- unmasked server frames parsed from one buffer and handed to a callback,
  without a coroutine or a queue per message;
- pings answered, the closing handshake done, ``closed`` resolved when the
  server drops the TCP connection.

It is not a conforming client for untrusted servers (no fragmentation, no
UTF-8 checks, no extensions); the servers under test never need them.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import cast

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_TEXT",
    "HandshakeRejected",
    "WSClient",
    "connect",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_ZERO_MASK = b"\x00\x00\x00\x00"

FrameCallback = Callable[["WSClient", int, bytes], None]


class HandshakeRejected(Exception):
    """The server answered the upgrade request with something other than 101."""


def frame(opcode: int, payload: bytes) -> bytes:
    """A complete client frame (FIN set, zero mask) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    return header + _ZERO_MASK + payload


class WSClient(asyncio.Protocol):
    """One client connection; ``on_frame(client, opcode, payload)`` gets every
    text or binary frame the server sends."""

    def __init__(self, request: bytes, on_frame: FrameCallback | None) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.on_frame = on_frame
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.is_open = False
        self.close_sent = False
        self.close_code: int | None = None
        self._buffer = bytearray()
        # Free for the scenario's own bookkeeping (e.g. a send timestamp).
        self.mark = 0.0

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if not self.handshake.done():
            self.handshake.set_exception(
                ConnectionError("connection lost during the handshake")
            )
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.is_open:
            self._buffer += data
            self._parse()
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        if not head.startswith(b"HTTP/1.1 101"):
            self.handshake.set_exception(
                HandshakeRejected(head.split(b"\r\n", 1)[0].decode("latin-1"))
            )
            assert self.transport is not None
            self.transport.close()
            return
        self.is_open = True
        self.handshake.set_result(None)
        if self._buffer:
            self._parse()

    # -- frames -----------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buffer
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            if buf[pos + 1] & 0x80:  # servers never mask, but skip a key if one does
                header += 4
            end = pos + header + length
            if end > size:
                break
            payload = bytes(buf[pos + header : end])
            pos = end
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if self.on_frame is not None:
                    self.on_frame(self, opcode, payload)
            elif opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self._close_received(payload)
        del buf[:pos]

    def _close_received(self, payload: bytes) -> None:
        self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
        if not self.close_sent:
            self.send(OP_CLOSE, payload[:2])
            self.close_sent = True
        self.is_open = False

    def send(self, opcode: int, payload: bytes) -> None:
        """Write one frame (does nothing once the transport is closing)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frame(opcode, payload))

    def send_text(self, payload: bytes) -> bool:
        """Send ``payload`` (UTF-8 bytes) as a text frame; False when the
        connection is gone (the server closed it)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(frame(OP_TEXT, payload))
        return True

    def start_close(self, code: int = 1000) -> None:
        """Start the closing handshake; ``closed`` resolves when TCP is gone."""
        if not self.close_sent:
            self.send(OP_CLOSE, code.to_bytes(2, "big"))
            self.close_sent = True

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()


def upgrade_request(host: str, port: int, path: str) -> bytes:
    """The HTTP/1.1 upgrade request for ``path``."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


async def connect(
    host: str,
    port: int,
    path: str,
    on_frame: FrameCallback | None = None,
    *,
    request: bytes | None = None,
    timeout: float = 30.0,
    local_addr: tuple[str, int] | None = None,
) -> WSClient:
    """Open a WebSocket to ``path`` and wait for the handshake.

    Raises ``HandshakeRejected`` when the server refuses the upgrade,
    ``ConnectionError``/``OSError`` when the connection fails and
    ``TimeoutError`` after ``timeout`` seconds. ``local_addr`` binds the
    client end (another loopback address has its own ephemeral ports).
    """
    loop = asyncio.get_running_loop()
    req = request if request is not None else upgrade_request(host, port, path)
    _, client = await asyncio.wait_for(
        loop.create_connection(
            lambda: WSClient(req, on_frame), host, port, local_addr=local_addr
        ),
        timeout,
    )
    await asyncio.wait_for(asyncio.shield(client.handshake), timeout)
    return client
