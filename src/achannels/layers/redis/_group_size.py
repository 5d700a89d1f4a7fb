"""``group_size`` for the pub/sub layer: ask every process, add the answers.

The pub/sub layer stores nothing in Redis: each process alone knows which of
its channels are in a group. So every process with group members subscribes
to one control channel, ``<prefix>__group_size__``; a count publishes the
question there, and ``PUBLISH`` itself says how many processes heard it.
Each answers with its local count on the asker's reply channel; the asker
adds the answers up once all are in (or, after :data:`ANSWER_TIMEOUT`, the
ones that came, with a warning). Nothing is sent to the members, and no
write is added to ``group_add``.

Processes of channels_redis do not answer, so their members are not counted
during a migration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..._tasks import OwnedTasks

if TYPE_CHECKING:
    from .pubsub import _LoopState

__all__ = ["ANSWER_TIMEOUT", "GroupSizes"]

logger = logging.getLogger("achannels.layers.redis")

#: Seconds a count waits for the processes' answers.
ANSWER_TIMEOUT = 2.0


class _Count:
    __slots__ = ("answers", "expected", "future", "total")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.expected: int | None = None
        self.answers = 0
        self.total = 0

    def check(self) -> None:
        if self.expected is not None and self.answers >= self.expected:
            if not self.future.done():
                self.future.set_result(None)


class GroupSizes:
    """One event loop's side of ``group_size``: answering and asking.

    ``publish(channel, data)`` publishes and returns how many subscribers
    got it (``PUBLISH`` on the channel's host).
    """

    def __init__(
        self,
        state: _LoopState,
        prefix: str,
        publish: Callable[[str, str], Awaitable[int]],
    ) -> None:
        self._state = state
        self._publish_raw = publish
        self.control = f"{prefix}__group_size__"
        self.reply = f"{self.control}{uuid.uuid4().hex}"
        self._answering = False
        self._asking = False
        self._counts: dict[str, _Count] = {}
        self._tasks = OwnedTasks()

    def handles(self, name: str) -> bool:
        return name == self.control or name == self.reply

    async def answer_counts(self) -> None:
        """Start answering counts (a process with group members must)."""
        if not self._answering:
            await self._state.subscriber(self.control).subscribe(self.control)
            self._answering = True

    def on_message(self, name: str, data: bytes) -> None:
        try:
            body = json.loads(data)
        except ValueError:
            return
        if name == self.control and isinstance(body, dict):
            group = body.get("group")
            members = self._state.groups.get(group) if isinstance(group, str) else None
            answer = {"id": body.get("id"), "count": len(members or ())}
            self._tasks.spawn(self._publish(body.get("reply"), answer))
        elif name == self.reply and isinstance(body, dict):
            count = self._counts.get(body.get("id"))  # type: ignore[arg-type]
            if count is not None and isinstance(body.get("count"), int):
                count.answers += 1
                count.total += body["count"]
                count.check()

    async def _publish(self, channel: object, body: dict[str, object]) -> int:
        if not isinstance(channel, str) or not channel.startswith(self.control):
            return 0
        try:
            receivers = await self._publish_raw(channel, json.dumps(body))
        except Exception:
            logger.warning("Could not answer a group_size count on %r", channel)
            return 0
        return receivers

    async def count(self, group_channel: str) -> int:
        """Return how many channels of every process are in the group."""
        if not self._asking:
            await self._state.subscriber(self.reply).subscribe(self.reply)
            self._asking = True
        count_id = uuid.uuid4().hex
        count = _Count(asyncio.get_running_loop().create_future())
        self._counts[count_id] = count
        try:
            question = {"id": count_id, "group": group_channel, "reply": self.reply}
            count.expected = await self._publish_raw(self.control, json.dumps(question))
            count.check()
            try:
                await asyncio.wait_for(asyncio.shield(count.future), ANSWER_TIMEOUT)
            except asyncio.TimeoutError:
                logger.warning(
                    "group_size(%r): %d of %d processes answered within %ss",
                    group_channel,
                    count.answers,
                    count.expected,
                    ANSWER_TIMEOUT,
                )
            return count.total
        finally:
            del self._counts[count_id]

    async def aclose(self) -> None:
        await self._tasks.aclose()
        for count in self._counts.values():
            if not count.future.done():
                count.future.cancel()
