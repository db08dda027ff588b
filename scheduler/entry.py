"""The `scheduler` command's entry point: what must happen before the command line's
imports (a second of them), then the command line itself (scheduler/cli)."""

from __future__ import annotations

import atexit
import gc
import sys


def main() -> None:
    # Registered first, so it runs last: at exit, Python's final collection walks every
    # object the command's imports made (typer, rich, SQLAlchemy, pydantic…), a quarter to a
    # third of a second on this machine for nothing, since the process ends. Frozen objects
    # are not walked; reference counting still frees what it frees, files and connections
    # are closed by their owners before this (the store, SMTP, logging's own exit hook).
    atexit.register(gc.freeze)
    from scheduler.delivery import prestart
    from scheduler.gc_pause import frozen_when_done

    # An embedded send's helper processes import while this one does (delivery/prestart.py).
    prestart.start_for(sys.argv[1:])
    try:
        with frozen_when_done():
            from scheduler.cli import main as cli_main

        cli_main()
    finally:
        prestart.discard()
