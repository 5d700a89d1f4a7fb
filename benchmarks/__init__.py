"""The achannels benchmark suite: achannels against Channels 4.3 and a
hand-written ASGI app, on uvicorn and hypercorn.

Run ``python -m benchmarks.run --quick`` from the bench environment built by
``benchmarks/setup.sh``; see ``benchmarks/README.md``.
"""
