"""The Django-signal recipe: a receiver that tells a group."""

from typing import Any

from django.dispatch import Signal, receiver

from achannels.layers import publisher

order_shipped = Signal()


@receiver(order_shipped)
def announce_shipment(sender: Any, order_id: int, group: str, **kwargs: Any) -> None:
    publisher.group_send(group, {"type": "pub.message", "text": f"shipped {order_id}"})
