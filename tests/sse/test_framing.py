"""The event stream's bytes, read back with the browser's parsing rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from achannels.generic.sse._framing import encode_comment, encode_event
from tests.support.event_stream import Event, EventStreamParser


def parse(data: bytes) -> tuple[list[Event], EventStreamParser]:
    parser = EventStreamParser()
    return parser.feed(data), parser


# One line of text that UTF-8 can carry (lone surrogates cannot).
LINE = st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"])


@given(data=st.text(), event=st.none() | st.text(LINE), id=st.none() | st.text(LINE))
def test_any_text_arrives_as_sent_with_line_breaks_as_lf(
    data: str, event: str | None, id: str | None
) -> None:
    events, _ = parse(encode_event(data, event, id))
    expected_type = event or "message"  # an empty event type means "message"
    assert events == [Event(expected_type, re.sub(r"\r\n|\r", "\n", data), id or "")]


@given(st.text())
def test_comments_never_become_events(text: str) -> None:
    events, _ = parse(encode_comment(text) + encode_event("after"))
    assert events == [Event("message", "after", "")]


def test_json_data_and_retry() -> None:
    events, parser = parse(encode_event({"a": [1, "é"]}, retry=1500))
    assert events == [Event("message", '{"a":[1,"é"]}', "")]
    assert parser.retry == 1500


def test_empty_data_is_still_an_event() -> None:
    assert parse(encode_event(""))[0] == [Event("message", "", "")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "a\nb"}, "event"),
        ({"id": "1\r"}, "id"),
        ({"id": "1\0"}, "id"),
        ({"retry": -1}, "retry"),
        ({"retry": 1.5}, "retry"),
        ({"id": "\ud800"}, "surrogate"),
    ],
)
def test_fields_that_would_break_the_framing_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_event("x", **kwargs)  # type: ignore[arg-type]
