"""Server shutdown (SIGTERM) with sockets open, on every server we support.

What each server does, and so what clients see:

- uvicorn (both WebSocket implementations) closes every socket itself with
  1012 ("service restart") before the application hears anything, then
  waits for the applications, then runs lifespan shutdown. The consumers'
  ``disconnect`` gets 1012.
- hypercorn leaves sockets open for ``--graceful-timeout`` seconds, then
  cancels the applications, then runs lifespan shutdown. achannels turns the
  cancellation into a 1001 ("going away") close to the client and a
  ``disconnect(1001)``; without that the client got 1011 from hypercorn.
- granian tells each application ``websocket.disconnect`` (no code, so
  ``disconnect(1005)``) and drops the socket without a close frame: clients
  see an abnormal closure (1006), and should reconnect as after any drop.

Either way the layers close after every ``disconnect`` has run, and nothing
in the output is a pending-task or unclosed-resource warning or a traceback
through achannels. (hypercorn 0.18 on Python 3.11 prints its own
``CancelledError`` traceback from asyncio's stream callback for each socket
it cancels; it names only hypercorn and asyncio frames.)
"""

from __future__ import annotations

import asyncio
import re
import signal

import pytest
from websockets.asyncio.client import connect

from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.testing import ApplicationCommunicator
from tests.support.redis import require_redis, unique_prefix
from tests.support.reliability import APP, TIMEOUT, closed_with
from tests.support.servers import serve

#: The close code clients get when the server is told to stop.
SHUTDOWN_CODE = {
    "uvicorn-websockets-sansio": 1012,
    "uvicorn-wsproto": 1012,
    "hypercorn": 1001,
    # granian drops open sockets without a close frame (the client sees
    # 1006) and tells the application websocket.disconnect without a code.
    "granian": None,
}
#: The code each consumer's disconnect() gets.
DISCONNECT_CODE = {**SHUTDOWN_CODE, "granian": 1005}
SOCKETS = 3


@pytest.mark.parametrize("layer", ["memory", "redis"])
async def test_sigterm_closes_sockets_runs_disconnect_then_closes_layers(
    server_kind: str, layer: str
) -> None:
    env = {"RELIABILITY_LAYER": layer, "PYTHONWARNINGS": "always::ResourceWarning"}
    if layer == "redis":
        env["RELIABILITY_REDIS_URL"] = require_redis()
        env["RELIABILITY_REDIS_PREFIX"] = unique_prefix()
    # A short grace period keeps the hypercorn case quick; uvicorn ignores it.
    extra = ["--graceful-timeout", "1"] if server_kind == "hypercorn" else []
    with serve(APP, server_kind, env=env, extra_args=extra) as server:
        sockets = [
            await connect(f"{server.ws_url}/ws/linger/{n}/", open_timeout=TIMEOUT)
            for n in range(SOCKETS)
        ]
        await asyncio.to_thread(
            server.wait_for_output, f"linger connected {SOCKETS - 1}"
        )
        server.proc.send_signal(signal.SIGTERM)
        codes = [(await closed_with(ws))[0] for ws in sockets]
        output = await asyncio.to_thread(server.stop)

    expected = SHUTDOWN_CODE[server_kind]
    assert codes == [expected] * SOCKETS, output
    assert server.proc.returncode in (0, -signal.SIGTERM), output
    done = [
        int(n)
        for n, code in re.findall(r"linger disconnect done n=(\d+) code=(\d+)", output)
        if int(code) == DISCONNECT_CODE[server_kind]
    ]
    assert sorted(done) == list(range(SOCKETS)), output
    # Layers close last: after every disconnect handler finished with them.
    assert output.count("reliability layer closed") == 1, output
    assert output.rindex("linger disconnect done") < output.index(
        "reliability layer closed"
    ), output
    for complaint in ("Task was destroyed", "unclosed", "was never awaited"):
        assert complaint not in output, output
    # No traceback passes through achannels or the application.
    assert "src/achannels" not in output, output
    assert "tests/apps" not in output, output
    assert "Exception in ASGI application" not in output, output
    assert "Error in ASGI Framework" not in output, output


async def test_cancelled_consumer_closes_open_socket_1001_then_disconnects() -> None:
    # What hypercorn does after its grace period: cancel the application.
    codes: list[int] = []

    class Consumer(AsyncWebsocketConsumer):
        async def disconnect(self, code: int) -> None:
            codes.append(code)

    communicator = ApplicationCommunicator(
        Consumer.as_asgi(), {"type": "websocket", "path": "/ws/"}
    )
    await communicator.send_input({"type": "websocket.connect"})
    assert (await communicator.receive_output())["type"] == "websocket.accept"
    communicator.future.cancel()
    await asyncio.wait({communicator.future}, timeout=TIMEOUT)
    assert communicator.future.cancelled()
    assert communicator.output_queue.get_nowait() == {
        "type": "websocket.close",
        "code": 1001,
    }
    assert communicator.output_queue.empty()
    assert codes == [1001]


async def test_cancelled_consumer_after_close_sends_nothing_more() -> None:
    codes: list[int] = []

    class Consumer(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.close(4000)

        async def disconnect(self, code: int) -> None:
            codes.append(code)

    communicator = ApplicationCommunicator(
        Consumer.as_asgi(), {"type": "websocket", "path": "/ws/"}
    )
    await communicator.send_input({"type": "websocket.connect"})
    assert (await communicator.receive_output())["type"] == "websocket.accept"
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4000,
    }
    communicator.future.cancel()
    await asyncio.wait({communicator.future}, timeout=TIMEOUT)
    assert communicator.output_queue.empty()
    assert codes == [1001]
