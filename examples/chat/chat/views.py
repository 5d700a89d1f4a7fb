"""Pages: the lobby (pick a name and a room) and a room."""

from __future__ import annotations

import mimetypes
import posixpath
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from achannels.layers import get_channel_layer

from .consumers import ROOM_RE, room_group
from .store import get_store


def lobby(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/lobby.html")


def room(request: HttpRequest, room: str) -> HttpResponse:
    if not ROOM_RE.match(room):
        raise Http404("No such room")
    return render(request, "chat/room.html", {"room": room})


async def rooms(request: HttpRequest) -> JsonResponse:
    """Rooms with people in them, busiest first: ``{"rooms": [{name, people}]}``.

    People are the distinct names in the room's presence; rooms nobody is
    in any more are forgotten.
    """
    layer = get_channel_layer()
    store = get_store()
    counts: dict[str, int] = {}
    for name in await store.rooms():
        people = len(await layer.presence_list(room_group(name)))
        if people:
            counts[name] = people
        else:
            await store.forget_room(name)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return JsonResponse(
        {"rooms": [{"name": name, "people": people} for name, people in ranked]}
    )


def static_file(request: HttpRequest, path: str) -> HttpResponse:
    """The demo's CSS and JS, found like ``collectstatic`` finds them.

    The demo serves them itself so that ``uvicorn`` alone is enough, also
    under a ``root_path``; a production site lets WhiteNoise or the reverse
    proxy serve ``collectstatic`` output instead. (Django's own ``serve``
    view streams a file iterator, which Django's ASGI handler warns about.)
    """
    found = finders.find(posixpath.normpath(path).lstrip("/"))
    if not isinstance(found, str):
        raise Http404("No such file")
    content_type, _ = mimetypes.guess_type(found)
    return HttpResponse(
        Path(found).read_bytes(),
        content_type=content_type or "application/octet-stream",
    )
