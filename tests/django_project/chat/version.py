"""Edited by the autoreload test: the index page shows this."""

VERSION = "1"
