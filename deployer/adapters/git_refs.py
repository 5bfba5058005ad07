"""Resolving a branch or tag to a commit before building, with `git ls-remote`.

The commit is needed up front: it is passed to the build as `_COMMIT_SHA`
(baked into the image, reported by /health) and names the candidate revision.
Asking the remote, not a local checkout, means no clone and no stale refs.
"""

from __future__ import annotations

import re
import subprocess

from deployer.config import ServiceConfig
from deployer.pipeline.ports import RefNotFound

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SAFE_REF = re.compile(r"^(?!-)[A-Za-z0-9._/-]{1,200}$")


class GitRefs:
    """`Refs` for `source.git` services: any URL or path git itself can reach."""

    def resolve(self, service: ServiceConfig, ref: str | None, timeout: float) -> str:
        url = service.source.git
        if url is None:
            raise RefNotFound(
                f"service {service.service} builds from {_source_kind(service)}; "
                "only `source.git` refs can be resolved here"
            )
        wanted = ref or "HEAD"
        if _FULL_SHA.match(wanted):
            return wanted  # already a commit; the build checks that it exists
        if not _SAFE_REF.match(wanted) or ".." in wanted:
            raise RefNotFound(f"{wanted!r} is not a valid git ref name")
        candidates = (
            [wanted]
            if wanted == "HEAD" or wanted.startswith("refs/")
            else [
                f"refs/tags/{wanted}",
                f"refs/heads/{wanted}",
            ]
        )
        try:
            listing = subprocess.run(
                ["git", "ls-remote", "--", url, *candidates, *[c + "^{}" for c in candidates]],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RefNotFound(
                f"git ls-remote {url} gave no answer within {timeout:.0f} s"
            ) from None
        if listing.returncode != 0:
            reason = listing.stderr.strip().splitlines()[-1] if listing.stderr.strip() else "failed"
            raise RefNotFound(f"cannot list refs of {url}: {reason}")
        found: dict[str, str] = {}
        for line in listing.stdout.splitlines():
            sha, _, name = line.partition("\t")
            found[name] = sha
        for candidate in candidates:
            # An annotated tag's own object is not a commit: prefer the peeled ^{} entry.
            commit = found.get(candidate + "^{}") or found.get(candidate)
            if commit:
                return commit
        raise RefNotFound(f"no branch or tag {wanted!r} in {url}")


def _source_kind(service: ServiceConfig) -> str:
    return "a connected repository" if service.source.connected_repository else "a build trigger"
