"""What changes: the serving revision against the candidate, before traffic moves.

Pure functions over the two revisions as Cloud Run holds them (`RevisionSpec`) and
the commit log between their commits. Names only, never a value: a plain variable's
value reaches here as a fingerprint, compared and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the record holds `Changes`: its module stays free of the ports' clients
    from deployer.pipeline.ports import CommitLog, PinnedSecret, RevisionSpec

# Subjects the parent message and the record keep: the first few are what people read.
SUBJECTS = 5


@dataclass(frozen=True)
class Changes:
    """What a deploy changes against what served when its candidate passed health."""

    commit: str  # the candidate's
    serving_revision: str = ""  # "": nothing served (a first deploy, or a service taken over)
    serving_commit: str = ""  # "": not known (see `commits_unknown`)
    commits: int | None = None  # None: not known
    commits_behind: int = 0  # the serving commit's own commits the candidate lacks
    commits_complete: bool = True  # False: `commits` is a lower bound
    subjects: list[str] = field(default_factory=list)  # newest first, at most SUBJECTS
    commits_unknown: str = ""  # why the commits are not known
    compare_url: str = ""
    image_from: str = ""
    image_to: str = ""  # both "" when the image is the same
    env_added: list[str] = field(default_factory=list)
    env_removed: list[str] = field(default_factory=list)
    env_changed: list[str] = field(default_factory=list)  # plain variables, value changed
    secret_env_added: list[str] = field(default_factory=list)
    secret_env_removed: list[str] = field(default_factory=list)
    secret_env_changed: list[str] = field(default_factory=list)  # now another secret
    # secret -> [version before, version now], for a secret both revisions read
    secret_versions: dict[str, list[str]] = field(default_factory=dict)
    # "service account", "cpu", "memory", "min instances", "max instances" -> [before, now]
    settings: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Changes:
        return cls(**data)

    @property
    def first(self) -> bool:
        """Nothing served before: there is nothing to compare against."""
        return not self.serving_revision

    @property
    def nothing_else(self) -> bool:
        """Same image, env, secrets and settings (the commits may still differ)."""
        return not (
            self.image_to
            or self.env_added
            or self.env_removed
            or self.env_changed
            or self.secret_env_added
            or self.secret_env_removed
            or self.secret_env_changed
            or self.secret_versions
            or self.settings
        )


def first_deploy(commit: str) -> Changes:
    """A deploy with nothing serving before it: nothing to compare."""
    return Changes(commit=commit, commits_unknown="nothing served before this deploy")


def compare(
    serving: RevisionSpec,
    candidate: RevisionSpec,
    commit: str,
    log: CommitLog | None,
    log_problem: str = "",
) -> Changes:
    """What `candidate` changes against `serving`; `log`: the commits between the serving
    commit and `commit` (None, with `log_problem` saying why, when not read)."""
    plain_before, plain_now = serving.env, candidate.env
    secret_before, secret_now = serving.secret_env, candidate.secret_env
    image_changed = serving.image != candidate.image
    return Changes(
        commit=commit,
        serving_revision=serving.name,
        serving_commit=serving.commit,
        commits=None if log is None else log.count,
        commits_behind=0 if log is None else log.behind,
        commits_complete=True if log is None else log.complete,
        subjects=[] if log is None else list(log.subjects[:SUBJECTS]),
        commits_unknown=_commits_unknown(serving, log, log_problem),
        compare_url="" if log is None else log.compare_url,
        image_from=serving.image if image_changed else "",
        image_to=candidate.image if image_changed else "",
        env_added=sorted(plain_now.keys() - plain_before.keys()),
        env_removed=sorted(plain_before.keys() - plain_now.keys()),
        env_changed=sorted(
            name
            for name in plain_now.keys() & plain_before.keys()
            if plain_now[name] != plain_before[name]
        ),
        secret_env_added=sorted(secret_now.keys() - secret_before.keys()),
        secret_env_removed=sorted(secret_before.keys() - secret_now.keys()),
        secret_env_changed=sorted(
            name
            for name in secret_now.keys() & secret_before.keys()
            if secret_now[name].secret != secret_before[name].secret
        ),
        secret_versions=_secret_versions(secret_before, secret_now),
        settings=_settings(serving, candidate),
    )


def _commits_unknown(serving: RevisionSpec, log: CommitLog | None, problem: str) -> str:
    if not serving.commit:
        return f"{serving.name} was not deployed by the deployer: its commit is not known"
    if log is None:
        return problem or "the commit log was not read"
    return ""


def _secret_versions(
    before: Mapping[str, PinnedSecret], now: Mapping[str, PinnedSecret]
) -> dict[str, list[str]]:
    """Each secret both revisions read whose version changed: secret -> [before, now].

    Keyed by the secret, not the variable: two variables reading one secret are one line.
    """
    old = {pinned.secret: pinned.version for pinned in before.values()}
    changed: dict[str, list[str]] = {}
    for pinned in now.values():
        was = old.get(pinned.secret)
        if was is not None and was != pinned.version:
            changed[pinned.secret] = [was, pinned.version]
    return dict(sorted(changed.items()))


def _settings(serving: RevisionSpec, candidate: RevisionSpec) -> dict[str, list[str]]:
    pairs = {
        # Cloud Run runs a revision without one as the project's default compute account.
        "service account": (serving.service_account, candidate.service_account),
        "cpu": (serving.cpu, candidate.cpu),
        "memory": (serving.memory, candidate.memory),
        "min instances": (str(serving.min_instances), str(candidate.min_instances)),
        "max instances": (str(serving.max_instances), str(candidate.max_instances)),
    }
    return {
        name: [before or "default", now or "default"]
        for name, (before, now) in pairs.items()
        if before != now
    }


def commits_line(changes: Changes) -> str:
    """ "3 commits from 1a2b3c4d5e6f" or why they are not known; plain text."""
    if changes.commits is None:
        return f"commits: not known ({changes.commits_unknown})"
    at_least = "" if changes.commits_complete else "at least "
    noun = "commit" if changes.commits == 1 else "commits"
    line = f"{at_least}{changes.commits} {noun} since {changes.serving_commit[:12]}"
    if changes.commits_behind:
        line += f", {changes.commits_behind} of its commits left out (an older commit)"
    return line


def lines(changes: Changes) -> list[str]:
    """What changes, for people: plain text, one line a kind, names only."""
    if changes.first:
        return ["what changes: nothing served before this deploy"]
    out = [f"what changes against {changes.serving_revision}: {commits_line(changes)}"]
    out += [f"  {subject}" for subject in changes.subjects]
    if changes.compare_url:
        out.append(f"  compare: {changes.compare_url}")
    if changes.image_to:
        out.append(f"image: {changes.image_from} -> {changes.image_to}")
    for label, names in env_groups(changes):
        out.append(f"{label}: {', '.join(names)}")
    for secret, (was, now) in changes.secret_versions.items():
        out.append(f"secret {secret}: version {was} -> {now}")
    for name, (was, now) in changes.settings.items():
        out.append(f"{name}: {was} -> {now}")
    if changes.nothing_else:
        out.append("same image, env, secrets and settings")
    return out


def env_groups(changes: Changes) -> list[tuple[str, list[str]]]:
    """(label, names) for each kind of env change that has names."""
    groups = [
        ("env added", changes.env_added),
        ("env removed", changes.env_removed),
        ("env changed", changes.env_changed),
        ("secret env added", changes.secret_env_added),
        ("secret env removed", changes.secret_env_removed),
        ("secret env now from another secret", changes.secret_env_changed),
    ]
    return [(label, names) for label, names in groups if names]
