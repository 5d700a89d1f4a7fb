"""The applications the benchmark servers run.

``consumers.build(framework)`` defines the consumers once and binds them to
achannels or Channels, so both systems run the same consumer code;
``raw_app`` is the hand-written ASGI app that sets the ceiling.
"""
