"""GitHub's REST API for deployments, as far as the deployer uses it, served under `/github`
on the sandbox's HTTP host (so `DEPLOYER_GITHUB_API_URL=http://HOST:PORT/github`, as a
GitHub Enterprise base URL has a path too).

    GET  /repos/{owner}/{repo}                                   the repository
    POST /repos/{owner}/{repo}/deployments                       create a deployment
    GET  /repos/{owner}/{repo}/deployments[?environment=&sha=&ref=&task=]
    GET  /repos/{owner}/{repo}/deployments/{id}
    POST /repos/{owner}/{repo}/deployments/{id}/statuses         create a deployment status
    GET  /repos/{owner}/{repo}/deployments/{id}/statuses         newest first
    POST /repos/{owner}/{repo}/statuses/{sha}                    create a commit status

As GitHub answers (docs.github.com/en/rest/deployments/deployments, ".../statuses",
docs.github.com/en/rest/commits/statuses):

- a token in `Authorization: token T` or `Bearer T`; none: 401 "Requires
  authentication"; one GitHub does not know: 401 "Bad credentials", whatever the path;
- an unknown repository, deployment or path: 404 "Not Found";
- a body that is not JSON: 400 "Problems parsing JSON"; a field of the wrong type, a
  missing `ref` or `state`, a state outside the enum: 422 "Invalid request." with the
  schema's complaint; a `ref` that names no branch, tag or commit: 422 "No ref found
  for: REF";
- create a deployment, `auto_merge` (default true) "is used to ensure that the
  requested ref is not behind the repository's default branch": a ref behind it is
  merged when it is a branch that merges cleanly, answered 202 "Merged branch response"
  (`Auto-merged main into topic on deployment.`) with no deployment created, else 409
  "Conflict merging main into topic." (a tag or a commit cannot take the merge, as a
  real deploy of a tag behind main shows);
- `required_contexts` (default: every context the commit has a status for) must all be
  `success`: else 409 "Conflict: Commit status checks failed for topic.";
  "If you do not require any contexts or create any commit statuses, the deployment
  will always succeed";
- 201 and the deployment (`production_environment` defaults to environment ==
  "production"); a status: 201, `log_url` also sets `target_url`, `environment`
  renames the deployment's environment, and a `success` with `auto_inactive` (default
  true) adds `inactive` to the earlier non-transient, non-production deployments of the
  same environment whose latest status was `success`.

Sandbox gaps: the 202 merge is not pushed into the local repository; lists are not
paginated (every item, no Link header); rate limits are not enforced.
Every call is recorded in `GitHubState.calls` (the token never).
"""

from __future__ import annotations

import json
import re
from email.message import Message as Headers
from typing import Any

from deployer_sandbox.github import git_refs
from deployer_sandbox.github.answers import (
    Answer,
    Response,
    Urls,
    check_types,
    invalid,
    json_answer,
    public,
)
from deployer_sandbox.github.state import GitHubState, Repository, stamp

_REPO = r"^/repos/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_REPO + r"$"), "repository"),
    ("POST", re.compile(_REPO + r"/deployments$"), "create_deployment"),
    ("GET", re.compile(_REPO + r"/deployments$"), "list_deployments"),
    ("GET", re.compile(_REPO + r"/deployments/(?P<id>[0-9]+)$"), "get_deployment"),
    ("POST", re.compile(_REPO + r"/deployments/(?P<id>[0-9]+)/statuses$"), "create_status"),
    ("GET", re.compile(_REPO + r"/deployments/(?P<id>[0-9]+)/statuses$"), "list_statuses"),
    ("POST", re.compile(_REPO + r"/statuses/(?P<sha>[0-9a-fA-F]{40})$"), "create_commit_status"),
]
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
COMMIT_STATES = ("error", "failure", "pending", "success")
_CREATOR = {"login": "sandbox-deployer", "id": 1, "type": "User", "site_admin": False}


class GitHubApi:
    """The REST surface over a `GitHubState` (`handle` one request)."""

    def __init__(self, state: GitHubState) -> None:
        self.state = state

    def handle(
        self, verb: str, path: str, query: dict[str, str], headers: Headers, body: bytes, base: str
    ) -> Response:
        """Answer `verb path` (path without the `/github` prefix); `base` is the API's URL as
        the caller reached it, for the URLs in answers. Every call is recorded."""
        recorded: Any = None
        try:
            recorded = self._body(body) if body.strip() else None
        except Answer:
            recorded = body.decode("utf-8", "replace")
        try:
            status, answer, extra = self._route(verb, path, query, headers, body, base)
        except Answer as error:
            status, answer, extra = error.status, error.body, {}
        self.state.record_call(verb, path, status, recorded)
        return json_answer(status, answer, extra)

    # --- routing ------------------------------------------------------------------------

    def _route(
        self, verb: str, path: str, query: dict[str, str], headers: Headers, body: bytes, base: str
    ) -> tuple[int, Any, dict[str, str]]:
        self._authenticate(headers)
        for method, pattern, action in _ROUTES:
            found = pattern.match(path)
            if found is None or method != verb:
                continue
            repository = self.state.repository(found["owner"], found["repo"])
            if repository is None:
                raise Answer(404, "Not Found")
            urls = Urls(base, repository)
            params = found.groupdict()
            if action == "repository":
                return 200, urls.repository(), {}
            if action == "create_deployment":
                return self._create_deployment(repository, urls, self._body(body))
            if action == "list_deployments":
                return 200, self._list_deployments(repository, query), {}
            deployment_id = int(params.get("id") or 0)
            if action == "create_commit_status":
                return self._create_commit_status(repository, params["sha"], self._body(body))
            deployment = self.state.deployment(repository, deployment_id)
            if deployment is None:
                raise Answer(404, "Not Found")
            if action == "get_deployment":
                return 200, public(deployment), {}
            if action == "list_statuses":
                statuses = self.state.statuses(deployment_id)
                return 200, [public(s) for s in reversed(statuses)], {}
            return self._create_status(repository, urls, deployment, self._body(body))
        raise Answer(404, "Not Found")

    def _authenticate(self, headers: Headers) -> None:
        authorization = headers.get("Authorization", "") or ""
        scheme, _, token = authorization.strip().partition(" ")
        if not authorization.strip():
            raise Answer(401, "Requires authentication")
        if scheme.lower() not in ("token", "bearer") or not self.state.authenticates(token.strip()):
            raise Answer(401, "Bad credentials")

    @staticmethod
    def _body(body: bytes) -> dict[str, Any]:
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise Answer(400, "Problems parsing JSON") from None
        if not isinstance(value, dict):
            raise Answer(400, "Body should be a JSON object")
        return value

    # --- deployments ----------------------------------------------------------------------

    def _create_deployment(
        self, repository: Repository, urls: Urls, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if "ref" not in body:
            raise invalid('"ref" wasn\'t supplied.')
        check_types(
            body,
            {
                "ref": (str,),
                "task": (str,),
                "auto_merge": (bool,),
                "required_contexts": (list,),
                "payload": (dict, str),
                "environment": (str,),
                "description": (str, type(None)),
                "transient_environment": (bool,),
                "production_environment": (bool,),
            },
        )
        for context in body.get("required_contexts") or []:
            if not isinstance(context, str):
                raise invalid(f"For 'items', {json.dumps(context)} is not a string.")
        ref: str = body["ref"]
        resolved = git_refs.resolve(repository.path, ref)
        if resolved is None:
            raise Answer(422, f"No ref found for: {ref}")
        self._merge_default_branch(repository, ref, resolved, body.get("auto_merge", True))
        self._required_contexts(repository, ref, resolved.sha, body.get("required_contexts"))

        environment = body.get("environment", "production")
        deployment_id = self.state.new_id()
        now = stamp()
        payload = body.get("payload", {})
        deployment = {
            "_repository": repository.full_name,
            "url": urls.deployment(deployment_id),
            "id": deployment_id,
            "node_id": f"DE_sandbox{deployment_id}",
            "sha": resolved.sha,
            "ref": ref,
            "task": body.get("task", "deploy"),
            "payload": payload,
            "original_environment": environment,
            "environment": environment,
            "description": body.get("description"),
            "creator": _CREATOR,
            "created_at": now,
            "updated_at": now,
            "statuses_url": urls.deployment(deployment_id) + "/statuses",
            "repository_url": urls.repository_url,
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get(
                "production_environment", environment == "production"
            ),
        }
        self.state.add_deployment(deployment)
        return 201, public(deployment), {"Location": deployment["url"]}

    def _merge_default_branch(
        self, repository: Repository, ref: str, resolved: git_refs.Resolved, auto_merge: bool
    ) -> None:
        """`auto_merge`: a ref behind the default branch is merged (202) or refused (409)."""
        default = repository.default_branch
        head = git_refs.branch_head(repository.path, default)
        if not auto_merge or head is None or git_refs.contains(repository.path, head, resolved.sha):
            return
        if resolved.kind == "branch" and git_refs.merges_cleanly(
            repository.path, head, resolved.sha
        ):
            # "Merged branch response": GitHub merged instead of creating a deployment.
            raise Answer(202, f"Auto-merged {default} into {ref} on deployment.")
        raise Answer(409, f"Conflict merging {default} into {ref}.")

    def _required_contexts(
        self, repository: Repository, ref: str, sha: str, required: list[str] | None
    ) -> None:
        states = self.state.commit_states(repository, sha)
        wanted = list(states) if required is None else required
        failing = [context for context in wanted if states.get(context) != "success"]
        if failing:
            raise Answer(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                errors=[
                    {
                        "contexts": [
                            {"context": c, "state": states.get(c, "missing")} for c in failing
                        ],
                        "resource": "Deployment",
                        "field": "required_contexts",
                        "code": "invalid",
                    }
                ],
            )

    def _list_deployments(self, repository: Repository, query: dict[str, str]) -> list[Any]:
        found = self.state.deployments(repository)
        for field_name in ("environment", "sha", "ref", "task"):
            if query.get(field_name):
                found = [d for d in found if d.get(field_name) == query[field_name]]
        return [public(d) for d in found]

    # --- statuses -------------------------------------------------------------------------

    def _create_status(
        self,
        repository: Repository,
        urls: Urls,
        deployment: dict[str, Any],
        body: dict[str, Any],
    ) -> tuple[int, Any, dict[str, str]]:
        if "state" not in body:
            raise invalid('"state" wasn\'t supplied.')
        check_types(
            body,
            {
                "state": (str,),
                "target_url": (str,),
                "log_url": (str,),
                "description": (str,),
                "environment": (str,),
                "environment_url": (str,),
                "auto_inactive": (bool,),
            },
        )
        state = body["state"]
        if state not in DEPLOYMENT_STATES:
            allowed = ", ".join(json.dumps(s) for s in DEPLOYMENT_STATES)
            raise invalid(f"For 'properties/state', {json.dumps(state)} is not one of [{allowed}].")
        description = body.get("description", "")
        if len(description) > 140:
            raise Answer(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "DeploymentStatus",
                        "code": "custom",
                        "field": "description",
                        "message": "description is too long (maximum is 140 characters)",
                    }
                ],
            )
        deployment_id = int(deployment["id"])
        if body.get("environment"):
            deployment["environment"] = body["environment"]
        log_url = body.get("log_url", "")
        status_id = self.state.new_id()
        now = stamp()
        status = {
            "url": f"{urls.deployment(deployment_id)}/statuses/{status_id}",
            "id": status_id,
            "node_id": f"DES_sandbox{status_id}",
            "state": state,
            "creator": _CREATOR,
            "description": description,
            "environment": deployment["environment"],
            # "Setting log_url will automatically set target_url to the same value."
            "target_url": log_url or body.get("target_url", ""),
            "log_url": log_url,
            "environment_url": body.get("environment_url", ""),
            "created_at": now,
            "updated_at": now,
            "deployment_url": urls.deployment(deployment_id),
            "repository_url": urls.repository_url,
        }
        self.state.add_status(deployment_id, status)
        if state == "success" and body.get("auto_inactive", True):
            self._inactivate_earlier(repository, urls, deployment)
        return 201, public(status), {"Location": status["url"]}

    def _inactivate_earlier(
        self, repository: Repository, urls: Urls, deployment: dict[str, Any]
    ) -> None:
        for earlier in self.state.deployments(repository):
            if int(earlier["id"]) >= int(deployment["id"]):
                continue
            if earlier["environment"] != deployment["environment"]:
                continue
            if earlier["transient_environment"] or earlier["production_environment"]:
                continue
            statuses = self.state.statuses(int(earlier["id"]))
            if not statuses or statuses[-1]["state"] != "success":
                continue
            status_id, now = self.state.new_id(), stamp()
            self.state.add_status(
                int(earlier["id"]),
                {
                    **statuses[-1],
                    "url": f"{urls.deployment(int(earlier['id']))}/statuses/{status_id}",
                    "id": status_id,
                    "node_id": f"DES_sandbox{status_id}",
                    "state": "inactive",
                    "description": "",
                    "created_at": now,
                    "updated_at": now,
                },
            )

    # --- commit statuses ------------------------------------------------------------------

    def _create_commit_status(
        self, repository: Repository, sha: str, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if "state" not in body:
            raise invalid('"state" wasn\'t supplied.')
        check_types(
            body,
            {
                "state": (str,),
                "target_url": (str, type(None)),
                "description": (str, type(None)),
                "context": (str,),
            },
        )
        if body["state"] not in COMMIT_STATES:
            allowed = ", ".join(json.dumps(s) for s in COMMIT_STATES)
            raise invalid(
                f"For 'properties/state', {json.dumps(body['state'])} is not one of [{allowed}]."
            )
        if git_refs.resolve(repository.path, sha) is None:
            raise Answer(422, f"No commit found for SHA: {sha}")
        status_id, now = self.state.new_id(), stamp()
        status = {
            "id": status_id,
            "state": body["state"],
            "context": body.get("context") or "default",
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "created_at": now,
            "updated_at": now,
            "creator": _CREATOR,
        }
        self.state.add_commit_status(repository, sha.lower(), status)
        return 201, status, {}
