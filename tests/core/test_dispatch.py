"""The dispatch loop's turn-taking: one handler at a time, first come first
served, and no turn lost to cancellation."""

from __future__ import annotations

import asyncio

from achannels._dispatch import Turn


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
