"""`deployer serve`: the webhook app on a threaded server, with the sweep on a timer.

The first SIGINT or SIGTERM stops taking requests and lets the running deploys
finish; a second one stops waiting for them.
"""

from __future__ import annotations

import signal
import sys
import threading

from werkzeug.serving import make_server

from deployer.front.context import close_contexts, current_context
from deployer.front.http import create_app
from deployer.front.sweep import Sweeper, SweepTimer

POLL = 0.5  # seconds between looks at whether a signal asked to stop


def serve(host: str, port: int) -> int:
    """`deployer serve`: the webhook app on a threaded server until SIGINT/SIGTERM."""
    # Fail fast on a bad configuration, and answer the first request warm.
    context = current_context()
    sweeps = SweepTimer(Sweeper(context), context.config.deployer.sweep_interval)
    server = make_server(host, port, create_app(), threaded=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(130)  # a second signal: stop waiting for running deploys
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    print(f"deployer serve: listening on http://{host}:{server.server_port}", flush=True)
    try:
        while not stop.wait(POLL):
            pass
    finally:
        server.shutdown()
        server.server_close()
        print("deployer serve: stopping; running deploys finish first", file=sys.stderr, flush=True)
        sweeps.stop()
        close_contexts()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
