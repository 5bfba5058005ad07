"""Cloud Build v1 (`google.devtools.cloudbuild.v1.CloudBuild`): CreateBuild, GetBuild, ListBuilds, CancelBuild.

    CreateBuild -> validate (as the API does) -> substitute -> Operation (metadata.build:
    id, name, log_url, QUEUED) -> BuildRunner thread (build_runner.py) -> the operation
    ends with the final Build, or with an error status when the build did not succeed

Names are `projects/P/locations/L/builds/ID`; builds created with `project_id` only
live in location `global`, as on the real API. Sources: `git_source` only (see
sources.py); other source kinds answer UNIMPLEMENTED. Every other method of the
service answers UNIMPLEMENTED.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.cloud.devtools import cloudbuild_v1 as cb
from google.longrunning import operations_pb2

from deployer.sandbox.build_runner import (
    CANCELLED,
    FAILURE,
    INTERNAL_ERROR,
    QUEUED,
    SUCCESS,
    TERMINAL,
    TIMEOUT,
    BuildRunner,
    copy_build,
    now,
)
from deployer.sandbox.faults import Faults
from deployer.sandbox.images import ImageStore
from deployer.sandbox.operations import Operations
from deployer.sandbox.rpc import (
    RpcError,
    failed_precondition,
    invalid,
    not_found,
    service,
    unary,
    unimplemented,
)
from deployer.sandbox.sources import TreeStore

DEFAULT_TIMEOUT_S = 3600  # the API's default since 2023 (it was 600 s before)
MAX_TIMEOUT_S = 24 * 3600
USER_KEY = re.compile(r"^_[A-Z0-9_]+$")
# Built-ins a build may refer to. Only the first four have values for a build that
# no trigger started; the others expand to "" (pass your own `_COMMIT_SHA`).
BUILTINS = ("PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION")
EMPTY_BUILTINS = ("REPO_NAME", "BRANCH_NAME", "TAG_NAME", "REVISION_ID", "COMMIT_SHA", "SHORT_SHA")
_TEMPLATE = re.compile(r"\$\$|\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)")
_BASH = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/builds/([^/]+)$")
_OPERATION_ERRORS = {
    FAILURE: (grpc.StatusCode.UNKNOWN, "Build failed; check build logs for details"),
    TIMEOUT: (grpc.StatusCode.UNKNOWN, "Build timed out; check build logs for details"),
    CANCELLED: (grpc.StatusCode.CANCELLED, "Build was cancelled"),
    INTERNAL_ERROR: (grpc.StatusCode.INTERNAL, "Build failed with an internal error"),
}


# --- substitutions ------------------------------------------------------------------


def _template_fields(build: cb.Build) -> list[str]:
    """Every field the API scans for `$KEY` / `${KEY}` templates."""
    fields = [*build.images, *build.tags]
    for step in build.steps:
        fields += [step.name, *step.args, *step.env, step.dir_, step.entrypoint]
    return fields


def _bash_eval(key: str, values: dict[str, str], seen: tuple[str, ...] = ()) -> str:
    """Evaluate substitution `key` bash-style (`${_A}`, `${_A:-x}`, `${_A:0:7}`, `${_A^^}`)."""
    if key in seen:
        raise invalid(
            f"invalid build: cycle in evaluating substitutions: {' -> '.join((*seen, key))}"
        )

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = _bash_eval(name, values, (*seen, key)) if name in values else ""
        operation = match.group(2) or ""
        if operation.startswith((":-", "-")):
            return value or operation.partition("-")[2]
        if operation in ("^^", ",,"):
            return value.upper() if operation == "^^" else value.lower()
        if operation.startswith(":") and re.fullmatch(r":\d+(:\d+)?", operation):
            start, _, length = operation[1:].partition(":")
            end = int(start) + int(length) if length else None
            return value[int(start) : end]
        if operation:
            raise invalid(f"invalid build: unsupported substitution expression {match.group(0)!r}")
        return value

    return _BASH.sub(one, values.get(key, ""))


def substitution_values(build: cb.Build, project: str, location: str) -> dict[str, str]:
    """Built-in and user substitutions, evaluated when `options.dynamic_substitutions` asks."""
    number = str(int(hashlib.sha256(project.encode()).hexdigest()[:10], 16))[:12]
    values = dict.fromkeys(EMPTY_BUILTINS, "")
    values |= {"PROJECT_ID": project, "BUILD_ID": build.id, "PROJECT_NUMBER": number}
    values |= {"LOCATION": location, **build.substitutions}
    if build.options.dynamic_substitutions:
        values = {key: _bash_eval(key, values) for key in values}
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    """Apply `$KEY` / `${KEY}` templates; `$$` is a literal `$`."""
    return _TEMPLATE.sub(
        lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1) or m.group(2), ""), text
    )


def check_substitutions(build: cb.Build) -> None:
    """Raise INVALID_ARGUMENT for substitution problems, with the API's wording."""
    for key in build.substitutions:
        if not USER_KEY.match(key) and key not in EMPTY_BUILTINS:
            raise invalid(
                f'invalid build: invalid .substitutions field: substitution key "{key}" does not '
                f'respect format "{USER_KEY.pattern}" and is not an overridable built-in substitution'
            )
    used: set[str] = set()
    missing: list[str] = []
    for text in _template_fields(build):
        for match in _TEMPLATE.finditer(text):
            key = match.group(1) or match.group(2)
            if key is None:
                continue
            used.add(key)
            if key in build.substitutions or key in BUILTINS or key in EMPTY_BUILTINS:
                continue
            if not USER_KEY.match(key):
                raise invalid(
                    "invalid value for 'build.substitutions': "
                    f'key in the template "{key}" is not a valid built-in substitution'
                )
            missing.append(f'key in the template "{key}" is not matched in the substitution data')
    if build.options.dynamic_substitutions:
        # A substitution that only feeds another one's value is in use too.
        for value in build.substitutions.values():
            used.update(m.group(1) or m.group(3) for m in _BASH.finditer(value))
    unused = [
        f'key "{k}" in the substitution data is not matched in the template'
        for k in sorted(build.substitutions)
        if k not in used
    ]
    problems = missing + unused
    loose = build.options.substitution_option == cb.BuildOptions.SubstitutionOption.ALLOW_LOOSE
    if problems and not loose:
        raise invalid("invalid build: " + ";".join(problems))


# --- validation -------------------------------------------------------------------------


def check_build(build: cb.Build) -> None:
    """Raise INVALID_ARGUMENT (or UNIMPLEMENTED for other sources) as CreateBuild would."""
    raw = cb.Build.pb(build)
    if raw.HasField("timeout") and not 0 <= raw.timeout.seconds <= MAX_TIMEOUT_S:
        raise invalid("invalid build: timeout must be between 0s and 24h")
    if not build.steps:
        raise invalid("invalid build: invalid .steps field: no build steps are specified")
    known = {"-"}
    for index, step in enumerate(build.steps):
        label = f'build step #{index} - "{step.id}"' if step.id else f"build step #{index}"
        if not step.name:
            raise invalid(
                f"invalid build: invalid .steps field: build step {index} must specify name"
            )
        for dependency in step.wait_for:
            if dependency not in known:
                raise invalid(
                    f'invalid build: invalid .steps field: {label} depends on "{dependency}", '
                    "which has not been defined"
                )
        if step.id in known:
            raise invalid(f"invalid build: invalid .steps field: {label}: the ID is not unique")
        if step.id:
            known.add(step.id)
        for entry in step.env:
            if "=" not in entry:
                raise invalid(
                    f'invalid build: invalid .steps field: {label}: the Env entry "{entry}" '
                    'must be of the form "KEY=VALUE"'
                )
    source = cb.Source.pb(build.source)
    kind = source.WhichOneof("source")
    if kind not in (None, "git_source"):
        raise unimplemented(
            f"The sandbox builds Source.git_source only (a local repository path or file:// URL); "
            f"{kind} is not served."
        )
    if kind == "git_source":
        if not build.source.git_source.url:
            raise invalid("invalid build: .source.git_source.url must be set")
        if build.source.git_source.dir_.startswith("/"):
            raise invalid("invalid build: .source.git_source.dir must be a relative path")
    check_substitutions(build)


# --- the service --------------------------------------------------------------------


@dataclass
class _Record:
    build: cb.Build
    operation: str
    runner: BuildRunner | None = None


def _log_url(project: str, location: str, build_id: str) -> str:
    region = "" if location == "global" else f";region={location}"
    return (
        f"https://console.cloud.google.com/cloud-build/builds{region}/{build_id}?project={project}"
    )


class CloudBuild:
    """The Cloud Build v1 servicer and the builds it runs."""

    def __init__(
        self, operations: Operations, images: ImageStore, faults: Faults, workdir: Path
    ) -> None:
        self._operations = operations
        self._images = images
        self._faults = faults
        self._trees = TreeStore(workdir)
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}  # by build name, in creation order
        self._closed = False

    def logs(self, build_id: str) -> list[str]:
        """The log lines of a build (any location), or [] when unknown."""
        with self._lock:
            runners = [r.runner for r in self._records.values() if r.build.id == build_id]
        return runners[0].log_lines() if runners and runners[0] else []

    def close(self) -> None:
        """Cancel running builds and wait (bounded) for their threads to end."""
        with self._lock:
            self._closed = True
            runners = [r.runner for r in self._records.values() if r.runner is not None]
        for runner in runners:
            runner.cancel()
        deadline = time.monotonic() + 5.0
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))

    # --- locating builds ----------------------------------------------------------------

    @staticmethod
    def _parent(parent: str, project_id: str) -> tuple[str, str]:
        """(project, location) of a request that has `parent` and/or `project_id`."""
        if parent:
            match = _PARENT.match(parent)
            if match is None:
                raise invalid(
                    f"parent {parent!r} must look like projects/PROJECT/locations/LOCATION"
                )
            if project_id and project_id != match.group(1):
                raise invalid(f"project_id {project_id!r} does not match parent {parent!r}")
            return match.group(1), match.group(2)
        if not project_id:
            raise invalid("project_id is required")
        return project_id, "global"

    def _find(self, name: str, project_id: str, build_id: str) -> _Record:
        if name:
            match = _NAME.match(name)
            if match is None:
                raise invalid(f"name {name!r} must look like projects/P/locations/L/builds/ID")
            if build_id and build_id != match.group(3):
                raise invalid(f"id {build_id!r} does not match name {name!r}")
        elif project_id and build_id:
            name = f"projects/{project_id}/locations/global/builds/{build_id}"
        else:
            raise invalid("project_id and id are required")
        with self._lock:
            record = self._records.get(name)
        if record is None:
            raise not_found("Requested entity was not found.")
        return record

    # --- builds -------------------------------------------------------------------------

    def _publish(self, name: str, build: cb.Build) -> None:
        """Store a runner's snapshot and mirror it into the build's operation."""
        with self._lock:
            record = self._records[name]
            record.build = build
        metadata = cb.BuildOperationMetadata(build=build)
        if build.status == SUCCESS:
            self._operations.succeed(record.operation, build, metadata)
        elif build.status in TERMINAL:
            code, message = _OPERATION_ERRORS[build.status]
            self._operations.fail(record.operation, RpcError(code, message), metadata)
        else:
            self._operations.set_metadata(record.operation, metadata)

    def _create(self, request: cb.CreateBuildRequest) -> operations_pb2.Operation:
        project, location = self._parent(request.parent, request.project_id)
        build = copy_build(request.build)
        check_build(build)
        build.id = str(uuid.uuid4())
        build.name = f"projects/{project}/locations/{location}/builds/{build.id}"
        build.project_id = project
        build.status = QUEUED
        build.create_time = now()
        build.log_url = _log_url(project, location, build.id)
        if not cb.Build.pb(build).HasField("timeout"):
            cb.Build.pb(build).timeout.seconds = DEFAULT_TIMEOUT_S
        cb.Build.pb(build).queue_ttl.seconds = cb.Build.pb(build).queue_ttl.seconds or 3600
        values = substitution_values(build, project, location)
        for step in build.steps:
            step.name, step.dir_ = substitute(step.name, values), substitute(step.dir_, values)
            step.entrypoint = substitute(step.entrypoint, values)
            step.args = [substitute(arg, values) for arg in step.args]
            step.env = [substitute(entry, values) for entry in step.env]
            step.status = QUEUED
        build.images = [substitute(image, values) for image in build.images]
        with self._lock:
            if self._closed:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, "The sandbox is shutting down.")
            operation = self._operations.start(
                f"projects/{project}/locations/{location}",
                cb.BuildOperationMetadata(build=build),
                on_cancel=lambda: self._cancel_quietly(build.name),
            )
            record = _Record(copy_build(build), operation)
            record.runner = BuildRunner(
                build,
                images=self._images,
                trees=self._trees,
                faults=self._faults,
                publish=lambda snapshot: self._publish(build.name, snapshot),
            )
            self._records[build.name] = record
        # The answer shows the build as created (QUEUED), whatever the runner does next.
        response = self._operations.get(operation)
        record.runner.start()
        return response

    def _cancel_record(self, name: str) -> cb.Build:
        with self._lock:
            record = self._records[name]
        if record.build.status in TERMINAL:
            status = cb.Build.Status(record.build.status).name
            raise failed_precondition(f"Build {record.build.id} is already finished ({status}).")
        if record.runner is not None:
            record.runner.cancel()
            record.runner.done.wait(5.0)
        with self._lock:
            return copy_build(record.build)

    def _cancel_quietly(self, name: str) -> None:
        """CancelOperation's hook: a build that already ended just stays as it is."""
        with contextlib.suppress(RpcError):
            self._cancel_record(name)

    def _get(self, request: cb.GetBuildRequest) -> cb.Build:
        record = self._find(request.name, request.project_id, request.id)
        with self._lock:
            return copy_build(record.build)

    def _cancel(self, request: cb.CancelBuildRequest) -> cb.Build:
        return self._cancel_record(
            self._find(request.name, request.project_id, request.id).build.name
        )

    def _list(self, request: cb.ListBuildsRequest) -> cb.ListBuildsResponse:
        project, location = self._parent(request.parent, request.project_id)
        keep = _filter(request.filter)
        prefix = f"projects/{project}/locations/{location}/builds/"
        with self._lock:
            builds = [copy_build(r.build) for n, r in self._records.items() if n.startswith(prefix)]
        builds = [b for b in reversed(builds) if keep(b)]  # newest first, as the API sorts
        try:
            start = int(request.page_token or 0)
        except ValueError:
            raise invalid(f"invalid page token {request.page_token!r}") from None
        size = request.page_size if request.page_size > 0 else 50
        following = str(start + size) if start + size < len(builds) else ""
        return cb.ListBuildsResponse(builds=builds[start : start + size], next_page_token=following)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler serving `google.devtools.cloudbuild.v1.CloudBuild`."""
        return service(
            "google.devtools.cloudbuild.v1.CloudBuild",
            {
                "CreateBuild": unary(self._create, cb.CreateBuildRequest, operations_pb2.Operation),
                "GetBuild": unary(self._get, cb.GetBuildRequest, cb.Build),
                "ListBuilds": unary(self._list, cb.ListBuildsRequest, cb.ListBuildsResponse),
                "CancelBuild": unary(self._cancel, cb.CancelBuildRequest, cb.Build),
            },
        )


def _filter(text: str) -> Callable[[cb.Build], bool]:
    """A predicate for the ListBuilds filters the sandbox understands: `field="value" AND ...`."""
    terms = []
    for term in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        match = re.fullmatch(r'(\w+)\s*=\s*"?([^"]*)"?', term.strip())
        if match is None or match.group(1) not in ("status", "id", "build_id", "tags", "images"):
            raise invalid(
                f"invalid filter {text!r}: the sandbox filters on status, id, tags, images"
            )
        terms.append((match.group(1), match.group(2)))

    def keep(build: cb.Build) -> bool:
        for field, value in terms:
            actual: list[str] = {
                "status": [cb.Build.Status(build.status).name],
                "id": [build.id],
                "build_id": [build.id],
                "tags": list(build.tags),
                "images": list(build.images),
            }[field]
            if value not in actual:
                return False
        return True

    return keep
