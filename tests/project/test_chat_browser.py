"""The chat demo in a real browser: headless Chromium driven by Playwright.

Two browser contexts (two people, separate storage) use the page served by
uvicorn exactly as a visitor would. Needs Debian's ``chromium`` at
/usr/bin/chromium (``apt-get install chromium``); skipped with that reason
when it is missing, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT, RunningServer, free_port, serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHAT_DIR = REPO_ROOT / "examples" / "chat"
CHAT_APP = "chat_project.asgi:application"
TIMEOUT_MS = 15_000
# The page backs off up to 10 s (+25 % jitter) between reconnection attempts.
RECONNECT_TIMEOUT_MS = 30_000

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]


def _browser_missing() -> str | None:
    if sync_playwright is None:
        return "needs Playwright for Python (pip install -e '.[dev]')"
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        return f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
def browser() -> Iterator[Browser]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI=true: {missing}")
        pytest.skip(missing)
    executable = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def chat_server(port: int | None = None) -> AbstractContextManager[RunningServer]:
    return serve(
        CHAT_APP, cwd=CHAT_DIR, env={"REDIS_URL": "", "DJANGO_DEBUG": "0"}, port=port
    )


def open_page(browser: Browser, errors: list[str]) -> Page:
    """A fresh visitor: own cookies and storage, page errors collected."""
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def join_from_lobby(page: Page, server: RunningServer, name: str, room: str) -> None:
    page.goto(f"{server.url}/")
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join-form button[type=submit]")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")


def join_by_link(page: Page, server: RunningServer, name: str, room: str) -> None:
    """Open the room's URL directly: the page asks for a name first."""
    page.goto(f"{server.url}/room/{room}/")
    expect(page.locator("#name-dialog")).to_be_visible()
    page.fill("#name-input", name)
    page.press("#name-input", "Enter")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def members(page: Page) -> list[str]:
    names = page.locator("#members li").evaluate_all(
        "items => items.map(item => item.dataset.name)"
    )
    return [str(name) for name in names]


def test_two_people_chat_with_live_presence_and_typing(
    browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    with chat_server() as server:
        ada = open_page(browser, errors)
        join_from_lobby(ada, server, "Ada", "general")
        expect(ada.locator("#members li")).to_have_count(1)
        say(ada, "Anyone here?")

        grace = open_page(browser, errors)
        join_by_link(grace, server, "Grace", "general")
        # History: Grace sees what was said before she came.
        expect(grace.locator("#messages .message .text")).to_have_text(["Anyone here?"])
        # Presence: Ada sees Grace arrive, live.
        expect(ada.locator("#members li")).to_have_count(2)
        assert members(ada) == ["Ada", "Grace"]
        expect(
            ada.locator("#messages .system", has_text="Grace joined.")
        ).to_be_visible()

        # Typing indicator, then the message itself, both ways.
        grace.type("#message", "Hello A")
        expect(ada.locator("#typing")).to_have_text("Grace is typing")
        grace.press("#message", "Enter")
        expect(ada.locator("#messages .message .text").last).to_have_text("Hello A")
        expect(ada.locator("#typing")).to_have_text("")
        say(ada, "Hi Grace, this is a WebSocket on uvicorn.")
        expect(grace.locator("#messages .message .text").last).to_have_text(
            "Hi Grace, this is a WebSocket on uvicorn."
        )

        # The lobby lists the active room with its head count.
        visitor = open_page(browser, errors)
        visitor.goto(f"{server.url}/")
        listed = visitor.locator("#room-list a", has_text="#general")
        expect(listed).to_contain_text("2 people")
        visitor.context.close()

        ada.screenshot(path=tmp_path / "ada.png")
        grace.screenshot(path=tmp_path / "grace.png")

        # Presence again: Grace closes her tab and Ada sees her leave.
        grace.context.close()
        expect(ada.locator("#members li")).to_have_count(1)
        expect(ada.locator("#messages .system", has_text="Grace left.")).to_be_visible()
        ada.context.close()
    assert errors == []
    assert (tmp_path / "ada.png").stat().st_size > 0


def test_pages_reconnect_after_server_restarts_on_same_port(
    browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    port = free_port()
    with chat_server(port) as server:
        ada = open_page(browser, errors)
        join_from_lobby(ada, server, "Ada", "restart")
        grace = open_page(browser, errors)
        join_by_link(grace, server, "Grace", "restart")
        expect(ada.locator("#members li")).to_have_count(2)
        server.stop()
        for page in (ada, grace):
            expect(page.locator("#status")).to_have_attribute(
                "data-state", "reconnecting"
            )
            expect(page.locator("#message")).to_be_disabled()
        ada.screenshot(path=tmp_path / "reconnecting.png")

    with chat_server(port) as server:
        for page in (ada, grace):
            expect(page.locator("#status")).to_have_attribute(
                "data-state", "connected", timeout=RECONNECT_TIMEOUT_MS
            )
            reconnected = page.locator("#messages .system", has_text="Reconnected.")
            expect(reconnected).to_be_visible()
        expect(ada.locator("#members li")).to_have_count(2)
        say(grace, "Back after the restart")
        expect(ada.locator("#messages .message .text").last).to_have_text(
            "Back after the restart"
        )
        ada.screenshot(path=tmp_path / "reconnected.png")
        for page in (ada, grace):
            page.context.close()
    assert errors == []
