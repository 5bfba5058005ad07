"""The sandbox's front end for Cloud Run: a URL per service and per traffic tag.

    Router
    ├── service URL  http://127.0.0.1:P   weighted random pick over the traffic split
    └── tag URL      http://127.0.0.1:Q   straight to the tagged revision
            └── proxy -> revision process (RunningRevision.url), adds X-Sandbox-Revision

Each URL is its own listener so that, as on Cloud Run, a tag's URL keeps
pointing at its revision whatever happens to the split. `/health` requests are
where the health faults bite: `health_500` answers 500 in the revision's name,
`health_hang` holds the request without answering (bounded).

Access is decided at the door, as Cloud Run's front end decides it. A public
service (allUsers holds roles/run.invoker: Services' IAM calls `set_public`; or
the service's `invoker_iam_disabled`: the Services servicer calls `set_access`)
takes any request. A private one (the default) wants an ID token in
`Authorization: Bearer T` (or Cloud Run's `X-Serverless-Authorization`, read
first), signed by the sandbox's key (`metadata.id_tokens`, minted by its metadata
server), current, and whose `aud` is the service's URL (also when a tag URL is
called) or one of its `custom_audiences`:

    no token                                   403, Google's "Forbidden" page
    a token that is not a valid ID token       401, Google's "Unauthorized" page
      (malformed, not the sandbox's, expired)
    a valid token for another audience         403
    a valid token for the service              the request goes on

Who the token names is not checked against the policy: any identity the
sandbox's metadata server vouches for may invoke.

Every answer a revision's request got, on the service URL or a tag URL, health probes
included, goes into `request_log` (`cloud_run.request_log`, read by the sandbox's Cloud
Monitoring) under the revision that had it; `error_rate` and `latency` faults bite
before the app (`cloud_run.proxy`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

from deployer_sandbox.cloud_run.proxy import (
    Forbidden,
    OnAnswer,
    Pick,
    ProxyHandler,
    Refusal,
    Target,
)
from deployer_sandbox.cloud_run.request_log import RequestLog, RequestRecord
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.serving import Serving
from deployer_sandbox.metadata.id_tokens import IdTokenKey, InvalidIdToken, WrongAudience


@dataclass
class _Route:
    split: list[tuple[Target, int]] = field(default_factory=list)
    tags: dict[str, Target] = field(default_factory=dict)
    public: bool = False  # allUsers may invoke (the service's IAM policy)
    invoker_iam_disabled: bool = False  # the service's own setting: no check at all
    custom_audiences: tuple[str, ...] = ()
    service_listener: _Listener | None = None
    tag_listeners: dict[str, _Listener] = field(default_factory=dict)


@dataclass(frozen=True)
class _Door:
    """What the door needs to know of a service, read under the router's lock."""

    open: bool  # anyone may invoke: allUsers holds the role, or invoker_iam_disabled
    audiences: frozenset[str]  # what a token's `aud` may be

    @classmethod
    def of(cls, route: _Route | None) -> _Door:
        if route is None:
            return cls(False, frozenset())
        urls = [] if route.service_listener is None else [route.service_listener.url]
        # The service's URL (with or without a final slash, as Google's samples send it)
        # and its custom audiences.
        audiences = frozenset([*urls, *(f"{url}/" for url in urls), *route.custom_audiences])
        return cls(route.public or route.invoker_iam_disabled, audiences)


class _Listener:
    """One URL: a threading HTTP server on its own loopback port."""

    def __init__(
        self,
        host: str,
        pick: Pick,
        faults: Faults,
        closing: threading.Event,
        request_timeout: float,
        on_answer: OnAnswer,
    ) -> None:
        handler = type(
            "RouteHandler",
            (ProxyHandler,),
            {
                "pick": staticmethod(pick),
                "faults": faults,
                "closing": closing,
                "request_timeout": request_timeout,
                "on_answer": staticmethod(on_answer),
            },
        )
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._serving = Serving(self.server, f"router-{self.server.server_address[1]}")
        self._serving.start()

    def close(self) -> None:
        self._serving.close()


class Router:
    """Listeners for every service URL and tag URL, proxying to revisions. Thread-safe."""

    def __init__(
        self,
        faults: Faults,
        host: str = "127.0.0.1",
        request_timeout: float = 300.0,
        id_tokens: IdTokenKey | None = None,
        on_listen: Callable[[int], None] | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        """`id_tokens`: the key whose ID tokens open private services (a new one if None);
        `on_listen`: told each new URL's port before the URL is handed out (the containers'
        network relays it into their namespaces); `request_log`: where answered requests
        are recorded (a new one if None)."""
        self.request_log = request_log if request_log is not None else RequestLog()
        self._on_listen = on_listen
        self._faults = faults
        self._id_tokens = id_tokens or IdTokenKey()
        self._host = host
        self._request_timeout = request_timeout
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._closing = threading.Event()

    def service_url(self, service: str) -> str:
        """The service's URL (stable for its lifetime); starts its listener on first use."""
        with self._lock:
            route = self._route(service)
            if route.service_listener is None:
                route.service_listener = self._listen(
                    service, lambda token: self._pick_split(service, token)
                )
            return route.service_listener.url

    def known_service_url(self, service: str) -> str | None:
        """The service's URL if it has one already (None: no such service routed here)."""
        with self._lock:
            route = self._routes.get(service)
            listener = route.service_listener if route is not None else None
            return listener.url if listener is not None else None

    def tag_url(self, service: str, tag: str) -> str:
        """The URL of a traffic tag of the service (stable, 404 while no such tag)."""
        with self._lock:
            route = self._route(service)
            listener = route.tag_listeners.get(tag)
            if listener is None:
                listener = self._listen(service, lambda token: self._pick_tag(service, tag, token))
                route.tag_listeners[tag] = listener
            return listener.url

    def update(
        self,
        service: str,
        split: Sequence[tuple[str, str, int]],
        tags: Mapping[str, tuple[str, str]],
    ) -> None:
        """Route the service's traffic: (revision, backend url, percent) and tag -> (revision, url)."""
        targets = [(Target(revision, url), percent) for revision, url, percent in split]
        if targets and sum(percent for _, percent in targets) != 100:
            raise ValueError("traffic percents must sum to 100")
        if any(percent < 0 for _, percent in targets):
            raise ValueError("traffic percents must not be negative")
        tagged = {tag: Target(revision, url) for tag, (revision, url) in tags.items()}
        with self._lock:
            route = self._route(service)
            route.split = targets
            route.tags = tagged

    def set_public(self, service: str, public: bool) -> None:
        """Whether the IAM policy lets anyone call the service's URLs (else an ID token is needed)."""
        with self._lock:
            self._route(service).public = public

    def set_access(
        self, service: str, invoker_iam_disabled: bool, custom_audiences: Sequence[str] = ()
    ) -> None:
        """The service's own access settings: no invoker check at all, and the audiences
        its ID tokens may have beside its URL."""
        with self._lock:
            route = self._route(service)
            route.invoker_iam_disabled = invoker_iam_disabled
            route.custom_audiences = tuple(custom_audiences)

    def remove(self, service: str) -> None:
        """Stop every listener of the service; its URLs stop answering."""
        with self._lock:
            route = self._routes.pop(service, None)
        if route is not None:
            _close_all(route)

    def close(self) -> None:
        """Stop every listener. Idempotent."""
        self._closing.set()
        with self._lock:
            routes = list(self._routes.values())
            self._routes.clear()
        for route in routes:
            _close_all(route)

    def _route(self, service: str) -> _Route:
        if self._closing.is_set():
            raise RuntimeError("the router is closed")
        return self._routes.setdefault(service, _Route())

    def _listen(self, service: str, pick: Pick) -> _Listener:
        listener = _Listener(
            self._host,
            pick,
            self._faults,
            self._closing,
            self._request_timeout,
            self._recorder(service),
        )
        if self._on_listen is not None:
            self._on_listen(int(listener.url.rsplit(":", 1)[1]))
        return listener

    def _recorder(self, service: str) -> OnAnswer:
        """Records a revision's answered request under the service's project and region."""
        # projects/P/locations/L/services/S; a bare id (no project, no region) otherwise.
        parts = service.split("/")
        project, location, service_id = (
            (parts[1], parts[3], parts[5]) if len(parts) == 6 else ("", "", service)
        )

        def record(revision: str, status: int, latency_ms: float) -> None:
            self.request_log.record(
                RequestRecord(
                    project=project,
                    location=location,
                    service=service_id,
                    revision=revision,
                    at=time.time(),
                    status=status,
                    latency_ms=latency_ms,
                )
            )

        return record

    def _admit(self, door: _Door, token: str | None) -> Forbidden | None:
        """None when the request may go on, else how the door refuses it (no lock held)."""
        if door.open:
            return None
        if token is None:
            return Forbidden(403)
        try:
            self._id_tokens.verify(token, door.audiences)
        except InvalidIdToken:
            return Forbidden(401)
        except WrongAudience:
            return Forbidden(403)
        return None

    def _pick_split(self, service: str, token: str | None) -> Target | Refusal | Forbidden:
        with self._lock:
            route = self._routes.get(service)
            split = list(route.split) if route else []
            door = _Door.of(route)
        refused = self._admit(door, token)
        if refused is not None:
            return refused
        live = [(target, percent) for target, percent in split if percent > 0]
        if not live:
            return Refusal(503, "Service Unavailable: no revision is ready to serve traffic.")
        chosen: Target = random.choices(
            [target for target, _ in live], weights=[percent for _, percent in live]
        )[0]
        return chosen

    def _pick_tag(self, service: str, tag: str, token: str | None) -> Target | Refusal | Forbidden:
        with self._lock:
            route = self._routes.get(service)
            target = route.tags.get(tag) if route else None
            door = _Door.of(route)
        refused = self._admit(door, token)
        if refused is not None:
            return refused
        if target is None:
            return Refusal(404, f"Not Found: no traffic tag {tag!r} on this service.")
        return target


def _close_all(route: _Route) -> None:
    listeners = [route.service_listener, *route.tag_listeners.values()]
    for listener in listeners:
        if listener is not None:
            listener.close()
