"""The connection's end while something is in flight, through real servers
(issue 12's audit): the client's close arrives while a group message is
dispatched, while a send to it is in flight, while ``@concurrent`` handlers
run or fill every slot, while ``disconnect()`` awaits the layer, and for sync
consumers in their worker thread.

In every case the close handshake completes promptly (the server answers
it), ``disconnect()`` runs once, after the handler in flight (in order), and
nothing is left behind: no consumer, no group member. Work in flight waits
on a release the test sends, not on a timer. Every client keeps reading
while it closes, as a browser does (see ``test_close_handshake``).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.reliability.test_close_handshake import APP, PROMPT, STALLED, close_reading
from tests.support.reliability import (
    REDIS_LAYERS,
    closed_with,
    report,
    serve_on_redis,
    wait_for_numbers,
)
from tests.support.servers import RunningServer, serve

TIMEOUT = 30.0
CLIENTS = 50
#: Servers that answer a client's close frame only once the application has
#: ended: while a handler or disconnect() is still running, the close
#: handshake waits for it (granian 2.x). uvicorn and hypercorn answer at once.
CLOSE_ANSWERED_AT_APP_END = {"granian"}


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve(APP, server_kind, extra_args=["--log-level", "warning"]) as s:
        yield s


async def wait_for_lines(server: RunningServer, needle: str, count: int) -> None:
    """Wait until the server's output has ``count`` lines containing ``needle``."""
    deadline = time.monotonic() + TIMEOUT
    while (found := server.output().count(needle)) < count:
        server.check_alive()
        assert time.monotonic() < deadline, f"{found} of {count} {needle!r} lines"
        await asyncio.sleep(0.05)


async def release(server: RunningServer, name: str) -> None:
    def get() -> None:
        with urllib.request.urlopen(f"{server.url}/release/{name}/", timeout=TIMEOUT):
            pass

    await asyncio.to_thread(get)


async def nothing_left(server: RunningServer) -> None:
    await wait_for_numbers(
        server, {"consumers": 0, "group_members": {}}, timeout=TIMEOUT
    )


async def members(
    server: RunningServer, route: str, count: int
) -> list[ClientConnection]:
    return list(
        await asyncio.gather(
            *(
                connect(
                    f"{server.ws_url}/{route.format(seat=seat)}", open_timeout=TIMEOUT
                )
                for seat in range(count)
            )
        )
    )


async def receive_until(ws: ClientConnection, text: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while await ws.recv() != text:
            pass


async def close_all(clients: list[ClientConnection]) -> float:
    """Close every client at once, reading; return the slowest handshake."""
    async with asyncio.timeout(TIMEOUT):
        return max(await asyncio.gather(*(close_reading(ws) for ws in clients)))


async def close_all_while_held(
    server: RunningServer,
    clients: list[ClientConnection],
    hold: str,
    not_yet: str,
    started: str | None = None,
) -> float:
    """Close every client while the consumers' work waits for the release
    ``hold``; check that nothing logged ``not_yet`` before the release (once
    every consumer logged ``started``, if given), then release. Return the
    slowest close handshake: one that did not wait for the release, except
    on servers that answer it at the application's end
    (:data:`CLOSE_ANSWERED_AT_APP_END`), where it includes the hold."""
    closing = asyncio.ensure_future(close_all(clients))
    try:
        if server.kind in CLOSE_ANSWERED_AT_APP_END:
            # Each close frame has reached the consumer once its connection
            # is no longer open for the client (closing, not closed).
            deadline = time.monotonic() + TIMEOUT
            while any(ws.state.name == "OPEN" for ws in clients):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            if started is not None:
                await wait_for_lines(server, started, len(clients))
            assert not_yet not in server.output()
            await release(server, hold)
            return await closing
        slowest = await closing
    finally:
        closing.cancel()
    if started is not None:
        await wait_for_lines(server, started, len(clients))
    # In order: what disconnect() does waits for the work in flight.
    assert not_yet not in server.output()
    await release(server, hold)
    return slowest


async def close_during_group_handlers(server: RunningServer) -> float:
    """Close a crowd while each member's group handler holds; return the
    slowest close handshake once every member has left the group."""
    clients = await members(server, "ws/holder/busy/{seat}/", CLIENTS)
    await clients[0].send("hold group")
    await asyncio.gather(*(receive_until(ws, "hold group") for ws in clients))
    await wait_for_lines(server, "close_app holding", CLIENTS)
    slowest = await close_all_while_held(
        server, clients, "group", "close_app disconnect"
    )
    await wait_for_lines(server, "close_app left", CLIENTS)
    return slowest


async def test_close_while_a_group_message_is_dispatched(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    slowest = await close_during_group_handlers(server)
    await nothing_left(server)
    report(
        capsys, f"{server.kind}: close during a group handler: slowest {slowest:.3f}s"
    )
    assert slowest < STALLED


@pytest.mark.parametrize("layer", REDIS_LAYERS)
async def test_close_while_a_group_message_is_dispatched_on_redis_layers(
    layer: str, server_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each member's handler started in the layer's reader (the member was
    # idle), blocked, and was handed back to its consumer: the close races
    # that path instead of the in-memory layer's, on every server (a
    # server's send awaited first in the reader, then in the consumer).
    with serve_on_redis(APP, layer, server_kind) as served:
        slowest = await close_during_group_handlers(served.server)
        await served.nothing_left("busy", TIMEOUT)
    report(
        capsys,
        f"{served.server.kind} on {layer}: close during a group handler: "
        f"slowest {slowest:.3f}s",
    )
    assert slowest < STALLED


async def test_close_while_a_send_is_in_flight(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 10
    clients = await members(server, "ws/flood/{seat}/", count)
    # 24 frames of 256 KiB each: the client stops reading after 16
    # (max_queue) and the socket buffers fill, so the consumer's send waits.
    for ws in clients:
        await ws.send(f"24 {256 * 1024}")
    deadline = time.monotonic() + TIMEOUT
    while not all(ws.recv_messages.paused for ws in clients):
        assert time.monotonic() < deadline, "the clients never stopped reading"
        await asyncio.sleep(0.05)
    # Closing while reading costs reading what was sent.
    slowest = await close_all(clients)
    await wait_for_lines(server, "close_app flood disconnect", count)
    await nothing_left(server)
    report(capsys, f"{server.kind}: close during a 6 MiB send: slowest {slowest:.3f}s")
    assert slowest < 5 * PROMPT


async def test_close_while_concurrent_handlers_run(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await members(server, "ws/watch/running/{seat}/", CLIENTS)
    for ws in clients:
        await ws.send("self a")
    await asyncio.gather(*(receive_until(ws, "watching a") for ws in clients))
    slowest = await close_all(clients)
    await wait_for_lines(server, "close_app watch disconnect", CLIENTS)
    await wait_for_lines(server, "close_app watch cancelled", CLIENTS)
    await nothing_left(server)
    report(
        capsys, f"{server.kind}: close during @concurrent work: slowest {slowest:.3f}s"
    )
    assert slowest < STALLED


@pytest.mark.parametrize("then", ["close", "frame-then-close"])
async def test_disconnect_gets_through_group_work_filling_every_slot(
    server: RunningServer, then: str
) -> None:
    """Group work fills each member's two slots, and a third piece holds the
    member's dispatch turn while it waits for a slot that only the end of
    the consumer frees. The disconnect must still get through, also behind
    a frame the client sends meanwhile (which then waits for the turn)."""
    count = 20
    clients = await members(server, "ws/watch/full/{seat}/", count)
    for name in ("w1", "w2", "w3"):
        await clients[0].send(f"group {name}")
    await asyncio.gather(*(receive_until(ws, "watching w2") for ws in clients))
    if then == "frame-then-close":
        for ws in clients:
            await ws.send("ping")
    slowest = await close_all(clients)
    await wait_for_lines(server, "close_app watch disconnect", count)
    await wait_for_lines(server, "close_app watch cancelled", 2 * count)
    await nothing_left(server)
    assert slowest < STALLED
    # Work still waiting for a slot when the client went was never started.
    assert "watching w3" not in server.output()


async def test_disconnect_gets_through_a_handler_waiting_for_a_slot(
    server: RunningServer,
) -> None:
    """An in-order handler dispatching ``@concurrent`` work itself waits for
    a slot, holding the turn, when both are taken."""
    count = 20
    clients = await members(server, "ws/watch/direct/{seat}/", count)
    for ws in clients:
        for name in ("d1", "d2", "d3"):
            await ws.send(f"direct {name}")
    await asyncio.gather(*(receive_until(ws, "watching d2") for ws in clients))
    await wait_for_lines(server, "close_app watch dispatched d2", count)
    slowest = await close_all(clients)
    await wait_for_lines(server, "close_app watch disconnect", count)
    await wait_for_lines(server, "close_app watch cancelled", 2 * count)
    # The handler returned (its work dropped) before disconnect() ran.
    assert server.output().count("close_app watch dispatched d3") == count
    await nothing_left(server)
    assert slowest < STALLED


async def test_close_while_disconnect_awaits_the_layer(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await members(server, "ws/holder/slow/{seat}/?slow-leave=leave", CLIENTS)
    await clients[0].send("hello")
    await asyncio.gather(*(receive_until(ws, "hello") for ws in clients))
    slowest = await close_all_while_held(
        server, clients, "leave", "close_app left", started="close_app disconnect"
    )
    await wait_for_lines(server, "close_app left", CLIENTS)
    await nothing_left(server)
    report(
        capsys, f"{server.kind}: close with a slow disconnect(): slowest {slowest:.3f}s"
    )
    assert slowest < STALLED


async def test_sync_room_members_close_promptly(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = await members(server, "ws/sync-room/sync/{seat}/", CLIENTS)
    for seat, ws in enumerate(clients):
        await ws.send(f'"{seat}"')
    await asyncio.gather(
        *(
            receive_until(ws, f'{{"message": "{seat}"}}')
            for seat, ws in enumerate(clients)
        )
    )
    slowest = await close_all(clients)
    await wait_for_lines(server, "close_app sync disconnect", CLIENTS)
    await nothing_left(server)
    report(capsys, f"{server.kind}: sync room closes: slowest {slowest:.3f}s")
    assert slowest < STALLED


async def test_close_while_sync_handlers_hold_their_threads(
    server: RunningServer,
) -> None:
    clients = await members(server, "ws/sync-room/held/{seat}/", CLIENTS)
    await clients[0].send('"hold threads"')
    await wait_for_lines(server, "close_app sync holding", CLIENTS)
    # disconnect() runs in the connection's thread, after its handler.
    slowest = await close_all_while_held(
        server, clients, "threads", "close_app sync disconnect"
    )
    await wait_for_lines(server, "close_app sync disconnect", CLIENTS)
    await nothing_left(server)
    assert slowest < STALLED


#: Servers whose record of an application's exception leaves out its notes
#: (PEP 678): granian 2.x prints the traceback without them.
NOTES_DROPPED = {"granian"}


@pytest.mark.parametrize(
    ("frame", "error", "message_type"),
    [
        ("boom", "RuntimeError: boom in receive", "websocket.receive"),
        ("boom later", "RuntimeError: boom in a layer message", "boom.later"),
    ],
)
async def test_handler_error_closes_1011_and_is_logged_once_with_its_context(
    server: RunningServer, frame: str, error: str, message_type: str
) -> None:
    async with connect(
        f"{server.ws_url}/ws/holder/errors/0/", open_timeout=TIMEOUT
    ) as ws:
        await ws.send(frame)
        code, _ = await closed_with(ws)
    assert code == 1011
    # disconnect() ran, then the server logged the error.
    await wait_for_lines(server, "close_app left /ws/holder/errors/0/", 1)
    await wait_for_lines(server, error, 1)
    await nothing_left(server)
    output = server.output()
    assert output.count(error) == 1, output
    assert output.count("Traceback (most recent call last)") == 1, output
    path = "/ws/holder/errors/0/"
    note = f"raised by Holder handling a {message_type!r} message for {path!r}"
    assert output.count(note) == (0 if server.kind in NOTES_DROPPED else 1), output
