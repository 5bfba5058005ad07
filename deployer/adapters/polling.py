"""How the deployer waits on long-running operations.

api_core's default polling first waits a whole second and backs off to 20 s;
the deployer's waits are short and must notice the end quickly, so poll from
20 ms, backing off to 0.5 s, always bounded by a deadline.
"""

from __future__ import annotations

from typing import Any

from google.api_core import operation as api_operation
from google.api_core.future import polling
from google.api_core.retry import Retry


def operation_polling(timeout: float) -> Retry:
    """Polling for `operation.result(polling=...)` that gives up after `timeout` seconds."""
    fast = polling.DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.5, multiplier=1.5)
    return fast.with_timeout(timeout)


def operation_result(operation: api_operation.Operation, timeout: float) -> Any:
    """The operation's result, polled quickly; raises its error, or TimeoutError after `timeout`."""
    # api_core's Operation.result is unannotated: this is the one place that calls it.
    return operation.result(timeout=timeout, polling=operation_polling(timeout))  # type: ignore[no-untyped-call]
