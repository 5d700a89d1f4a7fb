"""Sync views that publish: the most common code outside consumers."""

import threading

from django.http import HttpRequest, JsonResponse

from achannels.layers import publisher

from .signals import order_shipped


def publish(request: HttpRequest) -> JsonResponse:
    group = request.GET["group"]
    count = int(request.GET.get("n", "1"))
    for i in range(count):
        publisher.group_send(
            group, {"type": "pub.message", "text": request.GET.get("text", ""), "i": i}
        )
    return JsonResponse({"sent": count, "thread": threading.current_thread().name})


def ship(request: HttpRequest) -> JsonResponse:
    order_shipped.send(
        sender=None, order_id=int(request.GET["order"]), group=request.GET["group"]
    )
    return JsonResponse({"shipped": True})


def size(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"size": publisher.group_size(request.GET["group"])})
