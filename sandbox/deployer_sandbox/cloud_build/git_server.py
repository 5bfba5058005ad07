"""A local git smart-HTTP server that serves repositories the way GitHub serves private ones.

    GitServer  http://127.0.0.1:PORT  (`url`)
    └── /<owner>/<name>.git/...   git's own CGI, `git http-backend`, for a registered
                                  local repository (a checkout or a bare repository)

Cloud Build's 2nd-gen repositories (`cloud_build.repositories`) register their local
repository here; the `remote_uri` they answer is this server's URL for it, so a
client reads it as it reads github.com: over HTTP, with a read token.

As GitHub answers a private repository:

- no credentials: 401 with `WWW-Authenticate: Basic realm="GitHub"` (git then asks
  for a username, and fails with "could not read Username" when it may not prompt);
- HTTP Basic with any username and, as password, a live read token issued for that
  very repository (`issue_token`, what RepositoryManager.FetchReadToken answers):
  served. A wrong token, another repository's, or an expired one: 401 as well.
- pushes (`git-receive-pack`): 403, the tokens being read tokens.

Upload-pack gets `uploadpack.allowReachableSHA1InWant` and `uploadpack.allowFilter`,
as GitHub has them, so a client may fetch one commit by its id with
`--depth=1 --filter=blob:none` and then its blobs one by one. The `Git-Protocol`
header reaches git as GIT_PROTOCOL, so protocol v2 works.

Tokens are never logged nor put in a message.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import secrets
import string
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from deployer_sandbox.common.serving import Serving

log = logging.getLogger(__name__)

# What a GitHub App installation token lasts: "Installation access tokens expire after
# 1 hour" (GitHub docs, "Authenticating as a GitHub App installation").
TOKEN_LIFETIME_S = 3600.0
# GitHub's installation tokens: `ghs_` and 36 characters ("Behind GitHub's new
# authentication token formats", GitHub blog, 2021).
_TOKEN_PREFIX = "ghs_"
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_CGI_TIMEOUT_S = 60.0
# Characters a path segment may hold unescaped (RFC 3986 pchar, minus ":").
_SEGMENT_SAFE = "-._~!$&'()*+,;=@"


class GitServerError(Exception):
    """A repository cannot be served (the message says why)."""


class NameTaken(GitServerError):
    """The owner/name pair already serves another repository."""


@dataclass(frozen=True)
class _Served:
    git_dir: Path


@dataclass(frozen=True)
class _Token:
    repository: tuple[str, str]
    expires_at: float  # time.time()


def git_dir(path: Path) -> Path:
    """The git directory of the repository at `path` (a checkout or a bare repository)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--absolute-git-dir"],
            capture_output=True,
            timeout=30,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitServerError(f"{path} cannot be read by git: {error}") from None
    if done.returncode != 0:
        raise GitServerError(f"{path} is not a git repository")
    return Path(done.stdout.decode().strip())


class GitServer:
    """The git server, on its own loopback port. `start()` it, `close()` it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._served: dict[tuple[str, str], _Served] = {}
        self._tokens: dict[str, _Token] = {}
        handler = type("GitHandler", (_Handler,), {"server_state": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._serving = Serving(self._server, "git-server")

    # --- repositories ---------------------------------------------------------------------

    def repository_url(self, owner: str, name: str) -> str:
        """Where `owner/name` is served: `{url}/<owner>/<name>.git`."""
        return (
            f"{self.url}/{quote(owner, safe=_SEGMENT_SAFE)}/{quote(name, safe=_SEGMENT_SAFE)}.git"
        )

    def serve(self, owner: str, name: str, path: Path) -> str:
        """Serve the repository at `path` as `owner/name` and return its URL.

        Serving the same repository again under the same name is a no-op; another
        repository under a name already taken raises `NameTaken`, a path that is no
        git repository `GitServerError`.
        """
        if not owner or not name or "/" in owner + name:
            raise GitServerError(f"{owner!r}/{name!r} is not an owner/name pair")
        served = _Served(git_dir(path))
        with self._lock:
            current = self._served.get((owner, name))
            if current is not None and current != served:
                raise NameTaken(f"{owner}/{name} already serves {current.git_dir}")
            self._served[(owner, name)] = served
        return self.repository_url(owner, name)

    def withdraw(self, owner: str, name: str) -> None:
        """Stop serving `owner/name`; its tokens die with it."""
        with self._lock:
            self._served.pop((owner, name), None)
            for token in [t for t, v in self._tokens.items() if v.repository == (owner, name)]:
                del self._tokens[token]

    def issue_token(
        self, owner: str, name: str, lifetime_s: float = TOKEN_LIFETIME_S
    ) -> tuple[str, float]:
        """A new read token for `owner/name` and when it expires (a `time.time()` value)."""
        token = _TOKEN_PREFIX + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36))
        expires_at = time.time() + lifetime_s
        with self._lock:
            if (owner, name) not in self._served:
                raise GitServerError(f"{owner}/{name} is not served")
            now = time.time()
            for stale in [t for t, v in self._tokens.items() if v.expires_at <= now]:
                del self._tokens[stale]
            self._tokens[token] = _Token((owner, name), expires_at)
        return token, expires_at

    def _authorized(self, repository: tuple[str, str], header: str | None) -> _Served | None:
        """The repository, when `header` (Authorization) carries a live token for it."""
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            _, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except ValueError:
            return None
        now = time.time()
        with self._lock:
            served = self._served.get(repository)
            live = [
                token
                for token, grant in self._tokens.items()
                if grant.repository == repository and grant.expires_at > now
            ]
        matched = False
        for token in live:  # compare_digest: the time taken says nothing about the token
            matched |= hmac.compare_digest(token.encode(), password.encode())
        return served if matched else None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> GitServer:
        self._serving.start()
        return self

    def close(self) -> None:
        """Stop serving. Idempotent."""
        self._serving.close()


def _cgi_environment(
    served: _Served, method: str, rest: str, query: str, headers: Any, body: bytes, client: str
) -> dict[str, str]:
    """What `git http-backend` reads: the CGI variables, and upload-pack's settings."""
    settings = [
        # GitHub lets a client want any commit reachable from a ref, and filter blobs out.
        ("uploadpack.allowReachableSHA1InWant", "true"),
        ("uploadpack.allowFilter", "true"),
        # The repositories belong to whoever registered them, not necessarily this user.
        ("safe.directory", "*"),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_PROJECT_ROOT": str(served.git_dir),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": rest,
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": headers.get("Content-Type") or "",
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": client,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GIT_CONFIG_COUNT": str(len(settings)),
    }
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    if headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = headers["Git-Protocol"]
    if headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub-Babel/3.0"
    sys_version = ""
    server_state: GitServer

    def log_message(self, format: str, *args: Any) -> None:
        # The request line and status only: the Authorization header is never formatted.
        log.debug("git server %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        segments = parts.path.split("/")
        if len(segments) < 4 or segments[0] != "":
            return self._plain(404, "Not Found\n")
        owner, name = unquote(segments[1]), unquote(segments[2]).removesuffix(".git")
        rest = "/" + "/".join(segments[3:])
        served = self.server_state._authorized((owner, name), self.headers.get("Authorization"))
        if served is None:
            # GitHub's answer to a private repository, whether it exists or not.
            return self._plain(
                401, "Unauthorized\n", [("WWW-Authenticate", 'Basic realm="GitHub"')]
            )
        if "git-receive-pack" in rest or "service=git-receive-pack" in parts.query:
            # The token reads; GitHub refuses a push with it.
            return self._plain(403, "Write access to repository not granted.\n")
        if self.command not in ("GET", "POST"):
            return self._plain(405, "Method Not Allowed\n", [("Allow", "GET, POST")])
        self._backend(served, rest, parts.query, body)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _backend(self, served: _Served, rest: str, query: str, body: bytes) -> None:
        env = _cgi_environment(
            served, self.command, rest, query, self.headers, body, self.client_address[0]
        )
        try:
            done = subprocess.run(
                ["git", "http-backend"],
                input=body,
                capture_output=True,
                env=env,
                timeout=_CGI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return self._plain(504, "git http-backend timed out\n")
        if done.stderr:
            log.debug("git http-backend: %s", done.stderr.decode(errors="replace").strip())
        head, separator, payload = done.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, separator, payload = done.stdout.partition(b"\n\n")
        if not separator:
            return self._plain(500, "git http-backend gave no answer\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "status":
                status = int(value.split()[0])
            elif key.strip().lower() != "content-length":
                headers.append((key.strip(), value.strip()))
        self._send(status, payload, headers)

    def _plain(self, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        self._send(status, text.encode(), [("Content-Type", "text/plain"), *(headers or [])])

    def _send(self, status: int, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
