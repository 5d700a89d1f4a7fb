"""The dispatch loop's turn-taking (one handler at a time, first come first
served, no turn lost to cancellation) and the owned tasks behind its pumps."""

from __future__ import annotations

import asyncio

import pytest

from achannels._dispatch import ClientReceive, HandlerPool, Turn
from achannels._tasks import OwnedTasks


async def test_free_turn_is_taken_without_waiting() -> None:
    turn = Turn()
    await turn.take()
    turn.give_back()
    await asyncio.wait_for(turn.take(), 0.1)


async def test_waiters_get_the_turn_in_arrival_order() -> None:
    turn = Turn()
    order: list[int] = []
    await turn.take()

    async def worker(number: int) -> None:
        await turn.take()
        order.append(number)
        await asyncio.sleep(0)
        turn.give_back()

    tasks = [asyncio.ensure_future(worker(n)) for n in range(5)]
    await asyncio.sleep(0)
    turn.give_back()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert order == [0, 1, 2, 3, 4]


async def test_cancelled_waiter_does_not_keep_the_turn() -> None:
    turn = Turn()
    await turn.take()
    cancelled = asyncio.ensure_future(turn.take())
    later = asyncio.ensure_future(turn.take())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    turn.give_back()
    await asyncio.wait_for(later, 1)
    assert cancelled.cancelled()


async def test_turn_handed_to_a_waiter_cancelled_before_it_resumed_passes_on() -> None:
    turn = Turn()
    await turn.take()
    first = asyncio.ensure_future(turn.take())
    second = asyncio.ensure_future(turn.take())
    await asyncio.sleep(0)
    # Hand the turn to `first`, then cancel it before it gets to run: the
    # turn must move on to `second`, not vanish with `first`.
    turn.give_back()
    first.cancel()
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
    turn.give_back()
    await asyncio.wait_for(turn.take(), 0.1)


async def test_owned_tasks_first_failure_wins_and_aclose_cancels_the_rest() -> None:
    failures: list[BaseException] = []
    tasks = OwnedTasks(failures.append)
    forever = asyncio.Event()

    async def fail(message: str) -> None:
        raise RuntimeError(message)

    waiting = tasks.spawn(forever.wait())
    tasks.spawn(fail("first"))
    tasks.spawn(fail("second"))
    with pytest.raises(RuntimeError, match="first"):
        await asyncio.wait_for(tasks.wait(), 1)
    assert [str(failure) for failure in failures] == ["first"]
    await asyncio.wait_for(tasks.aclose(), 1)
    assert waiting.cancelled()
    assert len(tasks) == 0


async def test_owned_tasks_wait_returns_when_all_end_and_ignores_cancels() -> None:
    tasks = OwnedTasks()
    cancelled = tasks.spawn(asyncio.sleep(10))
    done = tasks.spawn(asyncio.sleep(0))
    cancelled.cancel()
    await asyncio.wait_for(tasks.wait(), 1)
    assert done.done() and tasks.failure is None


# The @concurrent pool's slots and the client look-ahead (issue 12)


async def forever(message: dict[str, object]) -> None:
    await asyncio.Event().wait()


async def test_pool_hands_slots_in_order_and_stop_releases_waiters() -> None:
    pool = HandlerPool(1)
    await pool.start(forever, {"type": "a"})
    waiting = asyncio.ensure_future(pool.start(forever, {"type": "b"}))
    await asyncio.sleep(0)
    assert pool.waiting and not waiting.done()
    pool.stop()
    await asyncio.wait_for(waiting, 1)  # returns without starting "b"
    assert len(pool._tasks) == 1
    await pool.start(forever, {"type": "c"})  # stopped: starts nothing
    assert len(pool._tasks) == 1
    await pool.aclose()
    assert len(pool._tasks) == 0


async def test_cancelled_slot_waiter_passes_a_handed_slot_on() -> None:
    pool = HandlerPool(1)
    done = asyncio.Event()

    async def brief(message: dict[str, object]) -> None:
        await done.wait()

    await pool.start(brief, {"type": "a"})
    first = asyncio.ensure_future(pool.start(forever, {"type": "b"}))
    second = asyncio.ensure_future(pool.start(forever, {"type": "c"}))
    await asyncio.sleep(0)
    done.set()
    first.cancel()  # gives up waiting: the freed slot goes to the next
    await asyncio.wait_for(second, 1)
    assert pool.waiting is False
    await pool.aclose()


async def test_look_ahead_sees_the_disconnect_behind_a_held_message() -> None:
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    pool = HandlerPool(1)
    client = ClientReceive(inbox.get, pool)
    pool.on_wait = client.look_ahead
    await pool.start(forever, {"type": "a"})
    waiting = asyncio.ensure_future(pool.start(forever, {"type": "b"}))
    await asyncio.sleep(0)
    await inbox.put({"type": "websocket.receive", "text": "x"})
    await inbox.put({"type": "websocket.disconnect", "code": 1000})
    # The look-ahead took the frame and holds it: one message, no more.
    await asyncio.sleep(0)
    assert inbox.qsize() == 1 and not waiting.done()
    # The loop takes the held frame; reading goes on while a start() waits,
    # so the disconnect behind it stops the pool.
    assert (await client())["type"] == "websocket.receive"
    await asyncio.wait_for(waiting, 1)
    assert (await client())["type"] == "websocket.disconnect"
    await client.aclose()
    await pool.aclose()
