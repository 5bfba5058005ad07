"""GitHub's Deployments API through PyGithub: create a deployment, post its statuses.

    POST /repos/{owner}/{repo}/deployments                        Repository.create_deployment
    POST /repos/{owner}/{repo}/deployments/{id}/statuses          the requester, with log_url

What GitHub answers a create (docs.github.com/en/rest/deployments/deployments,
"Create a deployment"): 201 with the deployment; 202 "Merged branch response"
(`{"message": "Auto-merged main into topic on deployment."}`) when `auto_merge`
merged the default branch into the ref: no deployment is created; 409 "Conflict
merging main into topic" (auto_merge could not merge) or "Conflict: Commit status
checks failed for topic." (a `required_contexts` check is not `success`); 422 for a
ref it cannot find or a body it refuses. A deploy of an exact commit that may lag
behind the default branch therefore always sends `auto_merge: false` and
`required_contexts: []`: the deploy itself decided what to run.

Every call is one try, bounded by `timeout` seconds to connect and as many to read
(PyGithub's retries and its pause between writes are off: a deploy never waits on
GitHub for long). Failures raise `GitHubProblem` (the listener's port), whose text
is safe to show ("401 Bad credentials"): the token is never in it, nor logged
(PyGithub's own debug log masks it as "token (oauth token removed)").
"""

from __future__ import annotations

from typing import Any

import requests
from github import Auth, Consts, Github, GithubException

from deployer.front.github_deployments import GitHubProblem

CALL_TIMEOUT = 5  # seconds (PyGithub takes a whole number)
USER_AGENT = "deployer (Cloud Run ChatOps)"


def _reason(error: GithubException) -> str:
    data = error.data if isinstance(error.data, dict) else {}
    message = str(data.get("message") or error.message or "").strip()
    return f"{error.status} {message}".strip()


class GitHubDeploymentsClient:
    """Deployments and their statuses in GitHub's REST API at `api_url`, as `token`."""

    def __init__(self, token: str, api_url: str, timeout: int = CALL_TIMEOUT) -> None:
        self._github = Github(
            auth=Auth.Token(token),
            base_url=api_url,
            timeout=timeout,
            user_agent=USER_AGENT,
            retry=None,
            # At most four writes a deploy, minutes apart: far from GitHub's secondary
            # limits, so no pause between them (PyGithub's default waits 1 s per write).
            seconds_between_requests=None,
            seconds_between_writes=None,
            # No GET of the repository before the POST: every object stays lazy.
            lazy=True,
        )
        self._timeout = timeout

    def create(
        self,
        repository: str,
        ref: str,
        environment: str,
        description: str,
        payload: dict[str, Any],
    ) -> int:
        """Create a deployment of `ref` to `environment`; its id."""
        repo = self._github.get_repo(repository)
        deployment = self._call(
            lambda: repo.create_deployment(
                ref,
                environment=environment,
                description=description[:140],
                payload=payload,
                # Defaults would refuse (409) or merge (202) a ref behind the default
                # branch, and wait on every commit status: see the module's docstring.
                auto_merge=False,
                required_contexts=[],
            )
        )
        deployment_id = deployment.raw_data.get("id")
        if not isinstance(deployment_id, int):
            message = str(deployment.raw_data.get("message") or "no deployment in the answer")
            raise GitHubProblem(f"no deployment created: {message}")
        return deployment_id

    def post_status(
        self,
        repository: str,
        deployment_id: int,
        state: str,
        description: str,
        environment_url: str = "",
        log_url: str = "",
    ) -> None:
        """Add a status (`queued`, `in_progress`, `success`, `failure`, `error`)."""
        deployment = self._github.get_repo(repository).get_deployment(deployment_id)
        body: dict[str, Any] = {"state": state, "description": description[:140]}
        if environment_url:
            body["environment_url"] = environment_url
        if log_url:
            # "Setting log_url will automatically set target_url to the same value"
            # (docs: "Create a deployment status"). PyGithub's Deployment.create_status
            # has no log_url, so the status goes through its requester, which PyGithub
            # offers for exactly that ("endpoints not yet supported").
            body["log_url"] = log_url
        accept = ", ".join(
            [Consts.deploymentEnhancementsPreview, Consts.deploymentStatusEnhancementsPreview]
        )
        self._call(
            lambda: self._github.requester.requestJsonAndCheck(
                "POST", f"{deployment.url}/statuses", input=body, headers={"Accept": accept}
            )
        )

    def close(self) -> None:
        self._github.close()

    def _call(self, call: Any) -> Any:
        try:
            return call()
        except GithubException as error:
            raise GitHubProblem(_reason(error), outage=error.status >= 500) from None
        except requests.Timeout:
            raise GitHubProblem(f"no answer within {self._timeout} s", outage=True) from None
        except requests.RequestException as error:
            kind = type(error).__name__
            raise GitHubProblem(f"GitHub unreachable ({kind})", outage=True) from None
