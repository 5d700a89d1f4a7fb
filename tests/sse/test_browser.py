"""A real ``EventSource`` in headless Chromium against the SSE feed example:
the server restarts, events are published while it is down, and the page
reconnects by itself and resumes from its last id (the history is in Redis,
so it outlives the process), without a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest

from achannels.layers import channel_layers
from tests.project.test_chat_browser import (  # noqa: F401 - the fixture
    TIMEOUT_MS,
    browser,
    open_page,
)
from tests.support.redis import require_redis, unique_prefix
from tests.support.servers import REPO_ROOT, free_port, serve

pytestmark = [pytest.mark.browser, pytest.mark.redis]

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # pragma: no cover - the dev extra installs it
    pass

FEED_DIR = REPO_ROOT / "examples" / "sse_feed"


@pytest.fixture
def feed_env() -> Iterator[dict[str, str]]:
    yield {"REDIS_URL": require_redis(), "FEED_PREFIX": unique_prefix()}


def post(url: str, text: str) -> None:
    response = httpx.post(f"{url}/publish/", data={"text": text}, timeout=10)
    response.raise_for_status()


def publish_elsewhere(env: dict[str, str], texts: list[str]) -> None:
    """Publish as another process would, while the server is down."""
    from achannels.layers.redis import RedisChannelLayer, RedisEventHistory

    async def run() -> None:
        layer = RedisChannelLayer(hosts=[env["REDIS_URL"]], prefix=env["FEED_PREFIX"])
        previous = channel_layers.set("sse-browser", layer)
        history = RedisEventHistory(
            prefix=env["FEED_PREFIX"], channel_layer_alias="sse-browser"
        )
        try:
            for text in texts:
                await history.group_send("feed", {"type": "feed.item", "text": text})
        finally:
            await history.aclose()
            await layer.close()
            channel_layers.backends.pop("sse-browser", None)
            if previous is not None:
                channel_layers.set("sse-browser", previous)

    # Playwright's sync API runs a loop in this thread: run ours in another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=30)


def feed_texts(page: Page) -> list[str]:
    texts = page.locator("#feed li").evaluate_all(
        "items => items.map(item => item.firstChild.textContent)"
    )
    return [str(text) for text in reversed(texts)]  # the page shows newest first


def test_event_source_resumes_from_its_last_id_after_a_server_restart(
    browser: Browser,  # noqa: F811 - the imported fixture
    feed_env: dict[str, str],
) -> None:
    errors: list[str] = []
    port = free_port()
    # uvicorn waits for open streams on shutdown unless told how long.
    args = ["--timeout-graceful-shutdown", "1"]

    def feed_server() -> object:
        return serve(
            "app:application", cwd=FEED_DIR, env=feed_env, port=port, extra_args=args
        )

    with feed_server() as server:  # type: ignore[attr-defined]
        page = open_page(browser, errors)
        page.goto(f"{server.url}/")
        page.evaluate("window.loadedOnce = true")
        expect(page.locator("#status")).to_have_text("live")
        for text in ("one", "two", "three"):
            post(server.url, text)
        expect(page.locator("#feed li")).to_have_count(3)
    expect(page.locator("#status")).to_have_text("reconnecting…")

    publish_elsewhere(feed_env, ["four", "five"])

    with feed_server() as server:  # type: ignore[attr-defined]
        expect(page.locator("#status")).to_have_text("live", timeout=TIMEOUT_MS * 2)
        expect(page.locator("#feed li")).to_have_count(5)
        post(server.url, "six")
        expect(page.locator("#feed li")).to_have_count(6)
        assert feed_texts(page) == ["one", "two", "three", "four", "five", "six"]
        ids = page.locator("#feed li").evaluate_all(
            "items => items.map(item => item.dataset.id)"
        )
        assert len(set(ids)) == 6
        # The same page all along: it resumed, it did not reload.
        assert page.evaluate("window.loadedOnce") is True
    assert errors == []
