"""The dispatch loop's turn-taking (one handler at a time, first come first
served, no turn lost to cancellation) and the owned tasks behind its pumps."""

from __future__ import annotations

import asyncio

import pytest

from achannels._dispatch import Turn
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
