"""The sandbox's HTTP servers each serve on a daemon thread of their own."""

from __future__ import annotations

import socketserver
import threading


class Serving:
    """`server`, served on a daemon thread from `start()` until `close()`."""

    def __init__(
        self, server: socketserver.BaseServer, name: str, poll_interval: float = 0.05
    ) -> None:
        self.server = server
        self._name = name
        self._poll_interval = poll_interval
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Serve on a daemon thread; a second call, or one after `close()`, does nothing."""
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": self._poll_interval},
            name=self._name,
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            # shutdown() waits for serve_forever to notice; it would block forever unstarted.
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()
