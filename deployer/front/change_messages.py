"""The parent's "What changes" section: the candidate against what served, names only.

Compact for Slack: one section (3000 characters, `fit` cuts the rest), subjects cut
to one line each, escaped like all user text (commit subjects and env names are).
"""

from __future__ import annotations

from deployer.front.mrkdwn import code, escape, image_ref, link
from deployer.pipeline.changes import Changes, commits_line, env_groups

SUBJECT_CHARS = 72  # a commit subject's first line, as git's own tools show it
NAMES_SHOWN = 15  # env names a line lists before it says how many more


def changes_text(changes: Changes) -> str:
    """The section's mrkdwn: commits, image, env names, secret versions, settings."""
    if changes.first:
        return "*What changes:* nothing served before this deploy"
    lines = [f"*What changes* against {code(changes.serving_revision)}: {_commits(changes)}"]
    lines += [f"• {escape(_cut(subject))}" for subject in changes.subjects]
    if changes.commits is not None and changes.commits > len(changes.subjects):
        lines.append(f"• …and {changes.commits - len(changes.subjects)} more")
    if changes.image_to:
        lines.append(f"Image {image_ref(changes.image_from)} → {image_ref(changes.image_to)}")
    for label, names in env_groups(changes):
        lines.append(f"{label[:1].upper()}{label[1:]}: {_names(names)}")
    for secret, (was, now) in changes.secret_versions.items():
        lines.append(f"Secret {code(secret)}: version {escape(was)} → {escape(now)}")
    for name, (was, now) in changes.settings.items():
        lines.append(f"{name[:1].upper()}{name[1:]}: {code(was)} → {code(now)}")
    if changes.nothing_else:
        lines.append("Same image, env, secrets and settings")
    return "\n".join(lines)


def _commits(changes: Changes) -> str:
    words = escape(commits_line(changes))
    if changes.compare_url:
        words += f" · {link(changes.compare_url, 'compare')}"
    return words


def _cut(subject: str) -> str:
    return subject if len(subject) <= SUBJECT_CHARS else subject[: SUBJECT_CHARS - 1] + "…"


def _names(names: list[str]) -> str:
    shown = ", ".join(code(name) for name in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
