"""Run an application for messages sent to named channels on a channel layer.

This is what ``manage.py runworker`` and ``achannels worker`` run: background
tasks sent with ``channel_layer.send("thumbnails", {...})`` reach the
consumer that a ``ChannelNameRouter`` maps to ``"thumbnails"``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar

# Channels' worker module offers its base class (achannels' Worker does not
# derive from it: see docs/migration.md, "Deliberate differences").
from asgiref.server import StatelessServer as StatelessServer

from ._tasks import OwnedTasks
from ._types import ASGIApp, Message

__all__ = ["Worker"]

logger = logging.getLogger("achannels.worker")


class Worker:
    """Listen on ``channels`` of ``channel_layer`` and feed each channel's
    messages, in order, to one application instance for that channel, with
    scope ``{"type": "channel", "channel": name}``.

    An instance is started by the first message for its channel and
    restarted by the next message if it ended (returned, or raised: the
    error is logged, the worker keeps going). A message without a ``type``
    is logged and dropped rather than stopping the worker, as it would in
    Channels. Instances have no client: calling ``send`` raises
    ``NotImplementedError``; reply through the channel layer instead.
    An error from the channel layer itself stops the worker and is raised.

    ``max_applications`` is accepted for Channels compatibility; with one
    instance per channel name there are never more instances than channels.
    Raises ``ValueError`` when ``channel_layer`` is ``None`` or ``channels``
    is empty.
    """

    #: Messages taken from the layer per channel before its instance has
    #: asked for them. Kept small so a slow consumer's backlog stays in the
    #: layer, where capacity and expiry apply.
    prefetch: ClassVar[int] = 8

    def __init__(
        self,
        application: ASGIApp,
        channels: Iterable[str],
        channel_layer: Any,
        max_applications: int = 1000,
    ):
        if channel_layer is None:
            raise ValueError(
                "Channel layer is not valid: configure one (CHANNEL_LAYERS or "
                "channel_layers.configure) for the worker to listen on"
            )
        self.application = application
        self.channels = list(channels)
        if not self.channels:
            raise ValueError("The worker needs at least one channel name to listen on")
        self.channel_layer = channel_layer
        self.max_applications = max_applications

    def run(self) -> None:
        """Run the worker until SIGINT or SIGTERM; then stop the listeners and
        application instances and close the channel layers. Blocks; raises
        what ``handle()`` raises."""
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.ensure_future(self.arun())
        handled: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, main.cancel)
            except (NotImplementedError, RuntimeError):
                # Windows, or not the main thread: Ctrl-C still raises
                # KeyboardInterrupt, which asyncio.run turns into cancellation.
                continue
            handled.append(sig)
        try:
            await main
        except asyncio.CancelledError:
            # Our signal handler cancelled `main`; anything else cancelling
            # this coroutine propagates.
            if not main.cancelled():
                raise
            logger.info("Worker stopped")
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            from .layers import channel_layers

            await channel_layers.aclose()

    async def arun(self) -> None:
        """Serve until cancelled (or until ``handle()`` raises)."""
        await self.handle()

    async def handle(self) -> None:
        """Listen on every channel until cancelled; raises the first error a
        listener meets (a channel layer failure)."""
        logger.info("Listening on channels %s", ", ".join(self.channels))
        await _all_or_none(*(self.listener(name) for name in self.channels))

    async def listener(self, channel: str) -> None:
        """Serve one channel until cancelled (Channels' name: ``handle()``
        runs one per channel): receive its messages from the layer and feed
        them, in order, to the channel's application instance."""
        queue: asyncio.Queue[Message] = asyncio.Queue(self.prefetch)
        await _all_or_none(
            self._listen(channel, queue), self._run_instances(channel, queue)
        )

    async def _listen(self, channel: str, queue: asyncio.Queue[Message]) -> None:
        """Move messages from ``channel`` on the layer to ``queue``."""
        while True:
            message = await self.channel_layer.receive(channel)
            if not isinstance(message, dict) or not message.get("type"):
                logger.error(
                    "Dropped a message without a 'type' received on channel %r: %r",
                    channel,
                    message,
                )
                continue
            await queue.put(message)

    async def _run_instances(self, channel: str, queue: asyncio.Queue[Message]) -> None:
        while True:
            # No instance until there is something for it to do.
            first = await queue.get()
            await self._run_instance(channel, first, queue)

    async def _run_instance(
        self, channel: str, first: Message, queue: asyncio.Queue[Message]
    ) -> None:
        pending = [first]

        async def receive() -> Message:
            if pending:
                return pending.pop()
            return await queue.get()

        async def send(message: Message) -> None:
            raise NotImplementedError(
                f"An application run by the worker for channel {channel!r} has no "
                f"client to send {message.get('type')!r} to; send replies through "
                "the channel layer instead"
            )

        scope = {"type": "channel", "channel": channel}
        try:
            await self.application(scope, receive, send)
        except Exception:
            logger.exception("Application instance for channel %r failed", channel)


async def _all_or_none(*coroutines: Coroutine[Any, Any, None]) -> None:
    # Run the coroutines together; the first to raise (or a cancellation of
    # this one) cancels the others, which are awaited before returning, so no
    # task outlives the call.
    tasks = OwnedTasks()
    for coroutine in coroutines:
        tasks.spawn(coroutine)
    try:
        await tasks.wait()
    finally:
        await tasks.aclose()
