"""Load generator, baseline server and scenarios for the performance figures of the full stack.

``python -m bench all`` (or ``make bench``) runs every scenario against a raw websockets
baseline and against daphne with the whole application, side by side; see ``bench/RESULTS.md``.
"""
