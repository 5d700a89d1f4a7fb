"""``manage.py publish <group> <text> [--count N]``: the command recipe."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from achannels.layers import publisher


class Command(BaseCommand):
    help = "Send a pub.message to a group"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group")
        parser.add_argument("text")
        parser.add_argument("--count", type=int, default=1)

    def handle(
        self, *args: Any, group: str, text: str, count: int, **options: Any
    ) -> None:
        for i in range(count):
            publisher.group_send(group, {"type": "pub.message", "text": text, "i": i})
        self.stdout.write(f"sent {count}")
