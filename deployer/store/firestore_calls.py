"""How the Firestore store calls Firestore: bounded, retried where that is safe, and
every failure named.

Each call has the store's timeout and repeats on transient errors (unavailable,
deadline exceeded, internal). `create()` lets exactly one of several racers make
a document; the losers read the winner's. A transaction runs until it commits,
again from its first read when racers aborted it. Any failure that remains is a
RefusedError naming the store: a deploy never goes on without its lock store.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from google.api_core import exceptions
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore

from deployer.errors import RefusedError

# Safe to repeat: set() is idempotent, and a repeated create() that had committed
# reads back its own token (see _create).
_TRANSIENT_ERRORS = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
)
_TRANSIENT = if_exception_type(*_TRANSIENT_ERRORS, exceptions.Aborted)
# Inside a transaction an aborted read is not repeated: the transaction is over,
# and _transact starts it again.
_TRANSIENT_IN_TRANSACTION = if_exception_type(*_TRANSIENT_ERRORS)
_ATTEMPTS = 5
# The longest random pause before a transaction that lost to racers starts again.
_MAX_PAUSE = 1.0

T = TypeVar("T")


class FirestoreCalls:
    """Calls to one Firestore client, as the store makes them; `where` names the store."""

    def __init__(self, client: firestore.Client, where: str, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._retry = Retry(
            predicate=_TRANSIENT, initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout
        )
        self._retry_in_transaction = self._retry.with_predicate(_TRANSIENT_IN_TRANSACTION)
        self.where = where

    @contextmanager
    def _answering(self, what: str) -> Iterator[None]:
        """Turn any Firestore failure into a RefusedError that names the store."""
        try:
            yield
        except (exceptions.GoogleAPICallError, exceptions.RetryError, GoogleAuthError) as error:
            raise RefusedError(
                f"{self.where} failed to {what}: {error}. Check that Firestore is reachable, "
                "the project and database exist, and the deployer has roles/datastore.user. "
                "Without the lock store nothing is deployed."
            ) from error

    def _calls(self, transaction: Any = None) -> dict[str, Any]:
        if transaction is None:
            return {"retry": self._retry, "timeout": self._timeout}
        return {
            "transaction": transaction,
            "retry": self._retry_in_transaction,
            "timeout": self._timeout,
        }

    def _create(self, ref: Any, fields: dict[str, Any]) -> dict[str, Any]:
        """Create the document, else read it; the fields it holds (ours when we won).

        Our fields carry a random token, so a create() retried after a reply was
        lost reads back its own document and still counts as the winner.
        """
        for _ in range(_ATTEMPTS):
            try:
                ref.create(fields, **self._calls())
                return fields
            except exceptions.AlreadyExists:
                pass
            snapshot = ref.get(**self._calls())
            if snapshot.exists:
                held: dict[str, Any] = snapshot.to_dict()
                return held
            # Deleted between our create and our read (a lock released): try again.
        raise RefusedError(f"{self.where}: {ref.path} kept changing while it was being created")

    def _transact(self, what: str, body: Callable[[Any], T]) -> T:
        """What `body(transaction)` answers, run `@firestore.transactional` until it commits.

        Its reads and writes commit together or not at all. A transaction aborted by
        racers (at a read or at its commit) starts again from its first read, so it
        decides on what the winner wrote. Each start is one attempt, after a random,
        growing pause: the library would start an aborted transaction again at once,
        and racers that all lost would meet again in the same conflict (the emulator
        breaks a deadlock by timing out every transaction in it, round after round).
        """
        run = firestore.transactional(body)
        deadline = time.monotonic() + self._timeout
        for attempt in itertools.count(1):
            try:
                result: T = run(self._client.transaction(max_attempts=1))
                return result
            except exceptions.Aborted:
                pass  # a read lost to a racer
            except ValueError as error:  # the library's "exceeded max attempts"
                if not isinstance(error.__cause__, exceptions.Aborted):
                    raise RefusedError(f"{self.where} could not {what}: {error}") from error
            pause = random.uniform(0, min(_MAX_PAUSE, 0.05 * 2**attempt))
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
        raise RefusedError(
            f"{self.where} could not {what}: racing writers aborted it {attempt} times "
            f"in {self._timeout:g} s"
        )
