"""`Sources`: the code to deploy, read with the access the build itself will have.

    source.git                    the URL, anonymously, as Cloud Build's GitSource
                                  fetches it (a public repository)
    source.connected_repository   a 2nd-gen Cloud Build repository: its `remote_uri`,
                                  with a read token from RepositoryManager.FetchReadToken
    source.trigger                the trigger's repository, read as above; the trigger
                                  brings its own build config (inline or a file)

FetchReadToken: "Fetches read token of a given repository" (cloudbuild v2
repositories.proto); the token is short-lived (`expiration_time`), so one is
fetched for each read and never kept. Reading the repository at a commit is
what lets the worker, which runs from the deployer's image, know the build
config of the very commit it builds: that file lives in the application's
repository and changes with its code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1, cloudbuild_v2

from deployer.adapters import git_log, git_remote
from deployer.adapters.build_request import build_parent
from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from deployer.config import ServiceConfig
from deployer.pipeline.ports import BuildConfigText, CommitLog, SourceProblem

_CALL_TIMEOUT = 15.0
CONNECT_FIX = (
    "a private repository builds from a Cloud Build connection: connect it and set "
    "source.connected_repository (README, Private repositories)"
)


class CloudBuildSources:
    """`Sources` over git and Cloud Build's RepositoryManager (v2) and triggers (v1)."""

    def __init__(
        self,
        repositories: Any = None,
        builds: Any = None,
        *,
        local_paths: bool | None = None,
    ) -> None:
        """`local_paths`: whether a `git` source may be a path on this machine (the sandbox
        builds from one; Cloud Build cannot). Default: only against an emulator."""
        self._repositories = repositories
        self._builds = builds
        self._local_paths = (
            bool(os.environ.get(EMULATOR_HOST_ENV)) if local_paths is None else local_paths
        )

    def resolve(self, service: ServiceConfig, ref: str | None, timeout: float) -> str:
        remote, _ = self._remote(service, timeout)
        return git_remote.resolve(remote, ref, timeout)

    def build_config(self, service: ServiceConfig, commit: str, timeout: float) -> BuildConfigText:
        remote, trigger = self._remote(service, timeout)
        where = f"at {commit[:12]} in {remote.name}"
        if trigger is not None and cloudbuild_v1.Build.pb(trigger.build).steps:
            # An inline build: the trigger's own steps, whatever the repository holds.
            text = cloudbuild_v1.Build.to_json(trigger.build, including_default_value_fields=False)
            return BuildConfigText(f"the inline build of trigger {service.source.trigger}", text)
        path = _trigger_file(trigger) if trigger is not None else service.build_config
        text = git_remote.read_file(remote, commit, path, timeout)
        if text is None:
            owner = (
                f"trigger {service.source.trigger}'s filename"
                if trigger is not None
                else f"services.{service.service}.build_config"
            )
            raise SourceProblem(
                f"build config {path} not found {where}",
                f"commit it, or fix {owner} (a path from the repository's root)",
            )
        return BuildConfigText(f"{path} {where}", text)

    def export(
        self, service: ServiceConfig, commit: str, destination: Path, timeout: float
    ) -> None:
        # The trigger's repository too: its build runs on that repository's checkout.
        remote, _ = self._remote(service, timeout)
        git_remote.export(remote, commit, destination, timeout)

    def commit_log(
        self, service: ServiceConfig, old: str, new: str, limit: int, timeout: float
    ) -> CommitLog:
        # The token, for a connected repository, is fetched for this read and travels in
        # git's environment, as for every other read.
        remote, _ = self._remote(service, timeout)
        return git_log.commit_log(remote, old, new, limit, timeout)

    # --- where the code is --------------------------------------------------------------

    def _remote(
        self, service: ServiceConfig, timeout: float
    ) -> tuple[git_remote.Remote, cloudbuild_v1.BuildTrigger | None]:
        source = service.source
        if source.git:
            return self._git_remote(source.git), None
        if source.connected_repository:
            return self._connected(source.connected_repository, timeout), None
        trigger = self._trigger(service, timeout)
        repository = (
            trigger.repository_event_config.repository or trigger.source_to_build.repository
        )
        if not repository:
            raise SourceProblem(
                f"trigger {source.trigger} builds no 2nd-gen repository",
                "use a trigger on a connected repository (repository_event_config.repository)",
            )
        return self._connected(repository, timeout), trigger

    def _git_remote(self, url: str) -> git_remote.Remote:
        if not _is_url(url) and not self._local_paths:
            raise SourceProblem(
                f"source.git is a path on this machine ({url}); Cloud Build cannot fetch it",
                "set source.git to the repository's URL, or source.connected_repository",
            )
        return git_remote.Remote(url=url, name=url, anonymous_fix=CONNECT_FIX)

    def _connected(self, repository: str, timeout: float) -> git_remote.Remote:
        client = self._repository_client()
        call_timeout = min(_CALL_TIMEOUT, max(1.0, timeout))
        try:
            found = client.get_repository(name=repository, timeout=call_timeout)
            token = client.fetch_read_token(repository=repository, timeout=call_timeout).token
        except exceptions.NotFound:
            raise SourceProblem(
                f"connected repository {repository} not found",
                "connect it in Cloud Build (README, Private repositories) or fix "
                "source.connected_repository",
            ) from None
        except exceptions.PermissionDenied as error:
            raise SourceProblem(
                f"cannot read connected repository {repository}: {error.message}",
                "grant the deployer roles/cloudbuild.readTokenAccessor on the connection",
            ) from None
        except exceptions.GoogleAPICallError as error:
            raise SourceProblem(
                f"cannot read connected repository {repository}: {error.message}",
                "retry; Cloud Build's RepositoryManager did not answer",
            ) from None
        return git_remote.Remote(url=str(found.remote_uri), name=repository, token=str(token))

    def _trigger(self, service: ServiceConfig, timeout: float) -> cloudbuild_v1.BuildTrigger:
        name = f"{build_parent(service)}/triggers/{service.source.trigger}"
        client = self._build_client()
        try:
            trigger: cloudbuild_v1.BuildTrigger = client.get_build_trigger(
                request=cloudbuild_v1.GetBuildTriggerRequest(
                    name=name, project_id=service.project, trigger_id=service.source.trigger
                ),
                timeout=min(_CALL_TIMEOUT, max(1.0, timeout)),
            )
        except exceptions.NotFound:
            raise SourceProblem(
                f"build trigger {name} not found", "fix source.trigger (the trigger's id)"
            ) from None
        except exceptions.GoogleAPICallError as error:
            raise SourceProblem(f"cannot read build trigger {name}: {error.message}") from None
        return trigger

    def _repository_client(self) -> Any:
        if self._repositories is None:
            self._repositories = google_client(cloudbuild_v2.RepositoryManagerClient)
        return self._repositories

    def _build_client(self) -> Any:
        if self._builds is None:
            self._builds = google_client(cloudbuild_v1.CloudBuildClient)
        return self._builds


def _trigger_file(trigger: cloudbuild_v1.BuildTrigger) -> str:
    """The build config path a trigger names (`cloudbuild.yaml` when it names none)."""
    return trigger.filename or trigger.git_file_source.path or "cloudbuild.yaml"


def _is_url(location: str) -> bool:
    """A URL git fetches over the network (not a path, not file://)."""
    return ("://" in location and not location.startswith("file://")) or (
        "@" in location and ":" in location.split("@", 1)[1]
    )
