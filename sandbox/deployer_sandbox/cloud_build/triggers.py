"""Cloud Build 2nd-gen triggers: CreateBuildTrigger, GetBuildTrigger, ListBuildTriggers,
DeleteBuildTrigger and RunBuildTrigger, on repositories of RepositoryManager.

    RunBuildTrigger(commit_sha | branch_name | tag_name)
    -> the commit in the trigger's repository
    -> the build config: the trigger's inline `build`, or its `filename` read at that commit
    -> substitutions: the config's, overridden by the trigger's, then by the request's;
       the built-ins of a triggered build (COMMIT_SHA, SHORT_SHA, BRANCH_NAME, ...) set
    -> CreateBuild's path: source = connected_repository at the commit,
       `build_trigger_id` set; the answer is CreateBuild's operation

Triggers are the 2nd-gen kind only: a repository from `repository_event_config`
or `source_to_build.repository`, in the trigger's own location. UpdateBuildTrigger,
ReceiveTriggerWebhook and events (pushes, pull requests) are not served: a
trigger runs when RunBuildTrigger is called.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import yaml
from google.cloud.devtools import cloudbuild_v1 as cb
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, json_format

from deployer_sandbox.cloud_build.repositories import Repositories
from deployer_sandbox.cloud_build.repository_store import ServedRepository, parse_repository_name
from deployer_sandbox.cloud_build.requests import check_steps, parse_parent, trigger_reference
from deployer_sandbox.cloud_build.sources import SourceError, read_file, ref_names, resolve_commit
from deployer_sandbox.cloud_build.substitutions import USER_KEY
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import (
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    unary,
    unimplemented,
)

# (project, location, build, the built-in substitutions' values) -> CreateBuild's operation
Submit = Callable[[str, str, cb.Build, dict[str, str]], operations_pb2.Operation]

# BuildTrigger.name: "They must contain only alphanumeric characters and dashes. They can
# be 1-64 characters long. They must begin and end with an alphanumeric character."
_TRIGGER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_NOT_FOUND = "Requested entity was not found."
RepositoryType = cb.RepositoryEventConfig.RepositoryType
SubstitutionOption = cb.BuildOptions.SubstitutionOption
_FIRST_GEN = ("trigger_template", "github", "pubsub_config", "webhook_config")


def _trigger_repository(trigger: cb.BuildTrigger) -> str:
    """The repository the trigger builds; INVALID_ARGUMENT or UNIMPLEMENTED when it has none
    the sandbox serves."""
    raw = cb.BuildTrigger.pb(trigger)
    for kind in _FIRST_GEN:
        if raw.HasField(kind):
            raise unimplemented(
                f"The sandbox serves 2nd-gen triggers only (repository_event_config, or "
                f"source_to_build.repository); {kind} is not served."
            )
    event = trigger.repository_event_config.repository
    manual = trigger.source_to_build.repository
    if trigger.source_to_build.uri:
        raise unimplemented(
            "The sandbox builds source_to_build.repository (a 2nd-gen repository) only, "
            "not source_to_build.uri."
        )
    if event and manual and event != manual:
        raise invalid(
            "repository_event_config.repository and source_to_build.repository name "
            "different repositories"
        )
    if not event and not manual:
        raise invalid(
            "a trigger needs a repository: repository_event_config.repository or "
            "source_to_build.repository"
        )
    if raw.HasField("repository_event_config"):
        config = raw.repository_event_config
        if config.WhichOneof("filter") is None:
            # A trigger on repository events says which events: the stricter reading.
            raise invalid("repository_event_config needs a push or pull_request filter")
        for pattern in (config.push.branch, config.push.tag, config.pull_request.branch):
            try:
                re.compile(pattern)
            except re.error as error:
                raise invalid(f"invalid regular expression {pattern!r}: {error}") from None
    if manual:
        # GitRepoSource.ref: "The branch or tag to use. Must start with "refs/" (required)."
        ref = trigger.source_to_build.ref
        if not ref.startswith("refs/"):
            raise invalid(f"source_to_build.ref {ref!r} must start with refs/")
    return event or manual


def _load_config(text: bytes, path: str) -> cb.Build:
    """The build config file at `path`, YAML or JSON, camelCase or snake_case keys."""
    # The wording of Cloud Build's own refusal: "failed unmarshalling build config
    # build/cloudbuild.yaml: ..." (kubernetes-sigs/kubebuilder#2663,
    # GoogleCloudPlatform/cloud-builders-community#586).
    where = f"failed unmarshalling build config {path}"
    try:
        data = yaml.safe_load(text.decode())
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise invalid(f"{where}: {error}") from None
    if not isinstance(data, dict):
        raise invalid(f"{where}: not a mapping of build fields")
    if "source" in data:
        raise invalid(f"{where}: a build config file has no source field")
    try:
        build: cb.Build = cb.Build.from_json(json.dumps(data), ignore_unknown_fields=False)
    except (TypeError, ValueError, json_format.ParseError) as error:
        raise invalid(f"{where}: {str(error).splitlines()[0] if str(error) else error}") from None
    return build


class BuildTriggers:
    """The trigger methods of the CloudBuild servicer."""

    def __init__(self, repositories: Repositories | None, submit: Submit) -> None:
        self._repositories = repositories
        self._submit = submit
        self._lock = threading.Lock()
        self._triggers: dict[str, cb.BuildTrigger] = {}  # by resource_name, oldest first

    def _served(self, name: str) -> ServedRepository:
        if self._repositories is None:
            raise failed_precondition("This sandbox serves no 2nd-gen repositories.")
        return self._repositories.served(name)

    # --- CreateBuildTrigger ---------------------------------------------------------------

    def _create(self, request: cb.CreateBuildTriggerRequest) -> cb.BuildTrigger:
        project, location = parse_parent(request.parent, request.project_id)
        trigger = clone(request.trigger)
        if not trigger.name:
            raise invalid("trigger.name is required")
        if not _TRIGGER_NAME.match(trigger.name):
            raise invalid(
                f"trigger.name {trigger.name!r}: trigger names contain only alphanumeric "
                "characters and dashes, are 1-64 characters long, and begin and end with "
                "an alphanumeric character"
            )
        repository = _trigger_repository(trigger)
        parsed = parse_repository_name(repository)
        if parsed.location != location:
            # A 2nd-gen repository is regional; a trigger builds it in its own location.
            raise invalid(
                f"repository {repository} is in location {parsed.location}, "
                f"the trigger in {location}"
            )
        if parsed.project != project:
            raise invalid(f"repository {repository} belongs to project {parsed.project}")
        self._served(repository)
        kind = cb.BuildTrigger.pb(trigger).WhichOneof("build_template")
        if kind is None:
            raise invalid("a trigger needs a build config: filename or build")
        if kind not in ("filename", "build"):
            raise unimplemented(
                f"The sandbox reads filename or an inline build; {kind} is not served."
            )
        if kind == "filename":
            path = trigger.filename
            if path.startswith("/") or ".." in path.split("/"):
                raise invalid(f"filename {path!r} must be a path from the repository's root")
        else:
            check_steps(trigger.build)
            if cb.Source.pb(trigger.build.source).WhichOneof("source") is not None:
                raise invalid("the inline build of a trigger takes its source from the trigger")
        for key in trigger.substitutions:
            # BuildTrigger.substitutions: "The keys must match ^_[A-Z0-9_]+$."
            if not USER_KEY.match(key):
                raise invalid(
                    f'invalid trigger: substitution key "{key}" does not respect format '
                    f'"{USER_KEY.pattern}"'
                )
        if trigger.approval_config.approval_required:
            raise unimplemented("The sandbox does not hold builds for approval.")
        trigger.id = str(uuid.uuid4())
        # BuildTrigger.resource_name: "projects/{project}/locations/{location}/triggers/
        # {trigger}, where {trigger} is a unique identifier generated by the service";
        # BuildTrigger.name stays the user's.
        trigger.resource_name = f"projects/{project}/locations/{location}/triggers/{trigger.id}"
        trigger.create_time = now()
        if cb.BuildTrigger.pb(trigger).HasField("repository_event_config"):
            # "If unspecified, RepositoryType defaults to GITHUB": all the sandbox connects.
            trigger.repository_event_config.repository_type = RepositoryType(RepositoryType.GITHUB)
        with self._lock:
            prefix = f"projects/{project}/locations/"
            for other in self._triggers.values():
                # "Must be unique within the project": across its locations, the stricter reading.
                if other.resource_name.startswith(prefix) and other.name == trigger.name:
                    raise already_exists(f"trigger {trigger.name} already exists")
            self._triggers[trigger.resource_name] = trigger
        return clone(trigger)

    # --- finding triggers -----------------------------------------------------------------

    def _find(self, parent: str, reference: str, by_name: bool) -> cb.BuildTrigger:
        """The trigger under `parent` whose id (or, when `by_name`, user name) is `reference`."""
        with self._lock:
            found = self._triggers.get(f"{parent}/triggers/{reference}")
            if found is None and by_name:
                found = next(
                    (
                        t
                        for n, t in self._triggers.items()
                        if n.startswith(parent + "/triggers/") and t.name == reference
                    ),
                    None,
                )
        if found is None:
            raise not_found(_NOT_FOUND)
        return clone(found)

    def _get(self, request: cb.GetBuildTriggerRequest) -> cb.BuildTrigger:
        parent, reference = trigger_reference(request.name, request.project_id, request.trigger_id)
        # GetBuildTriggerRequest.trigger_id: "Identifier (id or name) of the BuildTrigger".
        return self._find(parent, reference, by_name=True)

    def _list(self, request: cb.ListBuildTriggersRequest) -> cb.ListBuildTriggersResponse:
        project, location = parse_parent(request.parent, request.project_id)
        prefix = f"projects/{project}/locations/{location}/triggers/"
        with self._lock:
            # "sorted by create_time descending" (ListBuildTriggersResponse.triggers)
            found = [clone(t) for n, t in reversed(self._triggers.items()) if n.startswith(prefix)]
        items, following = page(found, request.page_size, request.page_token, default_size=None)
        return cb.ListBuildTriggersResponse(triggers=items, next_page_token=following)

    def _delete(self, request: cb.DeleteBuildTriggerRequest) -> empty_pb2.Empty:
        parent, reference = trigger_reference(request.name, request.project_id, request.trigger_id)
        # DeleteBuildTriggerRequest.trigger_id: "ID of the BuildTrigger": the id only.
        trigger = self._find(parent, reference, by_name=False)
        with self._lock:
            self._triggers.pop(trigger.resource_name, None)
        return empty_pb2.Empty()

    # --- RunBuildTrigger ------------------------------------------------------------------

    def _run(self, request: cb.RunBuildTriggerRequest) -> operations_pb2.Operation:
        parent, reference = trigger_reference(request.name, request.project_id, request.trigger_id)
        # RunBuildTriggerRequest.trigger_id: "Required. ID of the trigger.": the id only.
        trigger = self._find(parent, reference, by_name=False)
        if trigger.disabled:
            raise failed_precondition(f"trigger {trigger.name} is disabled")
        project, location = parent.split("/")[1], parent.split("/")[3]
        repository = (
            trigger.repository_event_config.repository or trigger.source_to_build.repository
        )
        served = self._served(repository)
        source = request.source
        if source.dir_.startswith("/"):
            raise invalid("source.dir must be a relative path")
        commit, branch, tag = self._revision(trigger, source, served)
        kind = cb.BuildTrigger.pb(trigger).WhichOneof("build_template")
        if kind == "filename":
            text = read_file(served.path, commit, trigger.filename)
            if text is None:
                raise failed_precondition(
                    f"build config {trigger.filename} not found at {commit[:7]} in {repository}"
                )
            build = _load_config(text, trigger.filename)
        else:
            build = clone(trigger.build)
        # The config's substitutions are its defaults; the trigger's override them, and
        # the request's ("Substitutions to use in a triggered build", RepoSource) both.
        build.substitutions = {
            **build.substitutions,
            **trigger.substitutions,
            **source.substitutions,
        }
        build.source = cb.Source(
            connected_repository=cb.ConnectedRepository(
                repository=repository, revision=commit, dir_=source.dir_
            )
        )
        build.build_trigger_id = trigger.id
        # Cloud Build sets ALLOW_LOOSE on every build a trigger invokes, whatever the
        # config says: missing and unused substitutions pass (the substitutions page's
        # note on triggers; "works in Google Cloud Build" in
        # GoogleCloudPlatform/cloud-build-local#102). Malformed keys still do not.
        build.options.substitution_option = SubstitutionOption(SubstitutionOption.ALLOW_LOOSE)
        if trigger.service_account:
            build.service_account = trigger.service_account
        # "default substitutions for builds invoked by triggers"
        # (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values)
        builtins = {
            "TRIGGER_NAME": trigger.name,
            "COMMIT_SHA": commit,
            "REVISION_ID": commit,
            "SHORT_SHA": commit[:7],
            "REPO_NAME": served.repo,
            "REPO_FULL_NAME": served.full_name,
            "BRANCH_NAME": branch,
            "TAG_NAME": tag,
            "REF_NAME": branch or tag,
            "TRIGGER_BUILD_CONFIG_PATH": trigger.filename if kind == "filename" else "",
        }
        return self._submit(project, location, build, builtins)

    def _revision(
        self, trigger: cb.BuildTrigger, source: cb.RepoSource, served: ServedRepository
    ) -> tuple[str, str, str]:
        """(commit, branch, tag) the run builds: the request's revision, else the ref a
        manual trigger names."""
        kind = cb.RepoSource.pb(source).WhichOneof("revision")
        if kind == "commit_sha":
            sha = source.commit_sha
            if not _FULL_SHA.match(sha):
                # "Explicit commit SHA to build": a full one, the stricter reading.
                raise invalid(f"commit_sha {sha!r} must be a full 40-character commit SHA")
            try:
                return resolve_commit(served.path, sha, served.remote_uri), "", ""
            except SourceError:
                raise invalid(f"commit {sha} not found in {served.name}") from None
        if kind in ("branch_name", "tag_name"):
            # "Branch and tag names cannot consist of regular expressions": a literal name.
            literal = source.branch_name if kind == "branch_name" else source.tag_name
            prefix = "refs/heads/" if kind == "branch_name" else "refs/tags/"
            ref = prefix + literal
        elif trigger.source_to_build.ref:
            ref = trigger.source_to_build.ref
            prefix = "refs/tags/" if ref.startswith("refs/tags/") else "refs/heads/"
        else:
            raise invalid(
                "source: a commit_sha, branch_name or tag_name is required to run a trigger "
                "on repository events"
            )
        try:
            known = ref_names(served.path, prefix)
            if ref not in known:
                raise SourceError(ref)
            commit = resolve_commit(served.path, ref, served.remote_uri)
        except SourceError:
            raise invalid(f"{ref} not found in {served.name}") from None
        name = ref.removeprefix(prefix)
        return (commit, name, "") if prefix == "refs/heads/" else (commit, "", name)

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        """The trigger methods, for the CloudBuild service's handler."""
        op: Any = operations_pb2.Operation
        return {
            "CreateBuildTrigger": unary(
                self._create, cb.CreateBuildTriggerRequest, cb.BuildTrigger
            ),
            "GetBuildTrigger": unary(self._get, cb.GetBuildTriggerRequest, cb.BuildTrigger),
            "ListBuildTriggers": unary(
                self._list, cb.ListBuildTriggersRequest, cb.ListBuildTriggersResponse
            ),
            "DeleteBuildTrigger": unary(
                self._delete, cb.DeleteBuildTriggerRequest, empty_pb2.Empty
            ),
            "RunBuildTrigger": unary(self._run, cb.RunBuildTriggerRequest, op),
        }
