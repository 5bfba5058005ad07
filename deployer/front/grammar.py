"""The `/deploy` grammar: text in, a command, a reply, or nothing to do.

    /deploy help
    /deploy status [ENV]
    /deploy history ENV
    /deploy rollback ENV [REVISION]
    /deploy lock ENV [reason ...]
    /deploy unlock ENV [force [reason ...]]
    /deploy promote FROM ENV [--queue] [--break-glass "reason"]
    /deploy approve ID
    /deploy reject ID [reason ...]
    /deploy [SERVICE] ENV [REF] [--queue] [--rebuild] [--break-glass "reason"]

Parsing never raises: a typo becomes a short reply only its author sees.
Environments, services, refs and revisions are plain ASCII; anything else
(`prod; id`, `PROD`, a Cyrillic look-alike letter) is refused by name, never guessed at.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from deployer.config import Config

_REF = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
_REVISION = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_DEPLOY_ID = re.compile(r"^d-[a-z0-9]{1,16}-[0-9a-f]{6}$")
MAX_REASON = 200


@dataclass(frozen=True)
class Deploy:
    environment: str
    ref: str | None = None
    service: str | None = None
    queue: bool = False  # wait for the environment's lock instead of being refused
    break_glass: str | None = None  # the reason to deploy despite a closed deploy window
    rebuild: bool = False  # build again even when an earlier build could be reused


@dataclass(frozen=True)
class Promote:
    """Deploy what `source` serves to `environment`, with no build."""

    source: str
    environment: str
    queue: bool = False
    break_glass: str | None = None


@dataclass(frozen=True)
class Approve:
    deploy_id: str


@dataclass(frozen=True)
class Reject:
    deploy_id: str
    reason: str = ""


@dataclass(frozen=True)
class Status:
    environment: str | None = None


@dataclass(frozen=True)
class History:
    environment: str


@dataclass(frozen=True)
class Rollback:
    environment: str
    revision: str | None = None


@dataclass(frozen=True)
class LockEnvironment:
    environment: str
    reason: str = ""


@dataclass(frozen=True)
class UnlockEnvironment:
    environment: str
    force: bool = False  # clear a deploy's lock too (admins only): the deploy is abandoned
    reason: str = ""


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Reply:
    """Not a command: tell the author this (ephemerally)."""

    text: str


@dataclass(frozen=True)
class Ignore:
    """Nothing to do and nothing to say."""


Command = (
    Deploy
    | Promote
    | Approve
    | Reject
    | Status
    | History
    | Rollback
    | LockEnvironment
    | UnlockEnvironment
    | Help
)
Parsed = Command | Reply | Ignore


def _known(config: Config) -> str:
    return ", ".join(f"`{name}`" for name in sorted(config.environments))


def _environment(word: str, config: Config) -> str | Reply:
    if word in config.environments:
        return word
    shown = word if word.isascii() and word.isprintable() else repr(word)
    return Reply(
        f"I don't know the environment `{shown}`. Known: {_known(config)}. Try `/deploy help`."
    )


def parse(text: str, config: Config) -> Parsed:
    """Parse the text after `/deploy`."""
    glass = _take_break_glass(text)
    if isinstance(glass, Reply):
        return glass
    if glass is not None:
        remaining, reason = glass
        parsed = parse(remaining, config)
        if isinstance(parsed, Promote):
            return dataclasses.replace(parsed, break_glass=reason)
        if not isinstance(parsed, Deploy):
            if isinstance(parsed, Reply):
                return parsed
            return Reply("`--break-glass` is for deploys only; rollbacks are never blocked.")
        return dataclasses.replace(parsed, break_glass=reason)
    words = text.split()
    if not words:
        return Help()
    head, rest = words[0], words[1:]
    if head == "help":
        return Help()
    if head == "status":
        if len(rest) > 1:
            return Reply("Usage: `/deploy status [ENV]`")
        if not rest:
            return Status()
        found = _environment(rest[0], config)
        return found if isinstance(found, Reply) else Status(found)
    if head == "history":
        if len(rest) != 1:
            return Reply("Usage: `/deploy history ENV`")
        found = _environment(rest[0], config)
        return found if isinstance(found, Reply) else History(found)
    if head == "unlock":
        if not rest or (len(rest) > 1 and rest[1] != "force"):
            return Reply("Usage: `/deploy unlock ENV [force [reason]]`")
        found = _environment(rest[0], config)
        if isinstance(found, Reply):
            return found
        reason = " ".join(rest[2:])
        if len(reason) > MAX_REASON:
            return Reply(f"Keep the reason under {MAX_REASON} characters.")
        return UnlockEnvironment(found, force=len(rest) > 1, reason=reason)
    if head == "rollback":
        if not 1 <= len(rest) <= 2:
            return Reply("Usage: `/deploy rollback ENV [REVISION]`")
        found = _environment(rest[0], config)
        if isinstance(found, Reply):
            return found
        if len(rest) == 2 and not _REVISION.match(rest[1]):
            return Reply(
                "A revision name is lower-case letters, digits and `-`, e.g. `backend-00042-abc`."
            )
        return Rollback(found, rest[1] if len(rest) == 2 else None)
    if head == "promote":
        return _promote(rest, config)
    if head in ("approve", "reject"):
        return _vote(head, rest)
    if head == "lock":
        if not rest:
            return Reply("Usage: `/deploy lock ENV [reason]`")
        found = _environment(rest[0], config)
        if isinstance(found, Reply):
            return found
        reason = " ".join(rest[1:])
        if len(reason) > MAX_REASON:
            return Reply(f"Keep the lock reason under {MAX_REASON} characters.")
        return LockEnvironment(found, reason)
    return _deploy(words, config)


def _promote(words: list[str], config: Config) -> Parsed:
    queue = "--queue" in words
    words = [word for word in words if word != "--queue"]
    if len(words) != 2:
        return Reply("Usage: `/deploy promote FROM ENV`, e.g. `/deploy promote staging prod`.")
    source = _environment(words[0], config)
    if isinstance(source, Reply):
        return source
    target = _environment(words[1], config)
    if isinstance(target, Reply):
        return target
    wanted = config.environments[target].promote_from
    if wanted != source:
        how = f"from `{wanted}`" if wanted else "from no environment (it has no `promote_from`)"
        return Reply(f"`{target}` is promoted {how}, not from `{source}`.")
    return Promote(source, target, queue)


def _vote(head: str, words: list[str]) -> Parsed:
    usage = "`/deploy approve ID`" if head == "approve" else "`/deploy reject ID [reason]`"
    if not words or (head == "approve" and len(words) != 1):
        return Reply(f"Usage: {usage}, with the deploy id from its thread, e.g. `d-m3k2x1-a1b2c3`.")
    if not _DEPLOY_ID.match(words[0]):
        return Reply(f"`{words[0][:40]}` is not a deploy id; it looks like `d-m3k2x1-a1b2c3`.")
    if head == "approve":
        return Approve(words[0])
    reason = " ".join(words[1:])
    if len(reason) > MAX_REASON:
        return Reply(f"Keep the reason under {MAX_REASON} characters.")
    return Reject(words[0], reason)


_BREAK_GLASS = re.compile(r"(?:^|\s)--break-glass(?:=|\s+|$)")
_QUOTES = {'"': '"', "'": "'", "“": "”", "\u2018": "\u2019"}  # Slack clients send curly quotes too


def _take_break_glass(text: str) -> tuple[str, str] | Reply | None:
    """`--break-glass REASON` out of `text`: (the text without it, the reason), or None.

    REASON is a quoted string ("...", '...', “...”), or else the words after the flag up to
    the next `--` option or the end: `/deploy prod main --break-glass hotfix for outage`.
    """
    found = _BREAK_GLASS.search(text)
    if found is None:
        return None
    before, after = text[: found.start()], text[found.end() :].lstrip()
    usage = Reply('Say why: `/deploy ENV [REF] --break-glass "reason"`.')
    close = _QUOTES.get(after[:1])
    if close is not None:
        end = after.find(close, 1)
        if end < 0:
            return Reply(f"The break-glass reason has no closing {close}. {usage.text}")
        reason, after = after[1:end], after[end + 1 :]
    else:
        words = after.split()
        upto = next((n for n, word in enumerate(words) if word.startswith("--")), len(words))
        reason, after = " ".join(words[:upto]), " ".join(words[upto:])
    reason = " ".join(reason.split())
    if not reason:
        return usage
    if len(reason) > MAX_REASON:
        return Reply(f"Keep the break-glass reason under {MAX_REASON} characters.")
    if _BREAK_GLASS.search(after):
        return Reply("Give `--break-glass` once.")
    return f"{before} {after}".strip(), reason


def _deploy(words: list[str], config: Config) -> Parsed:
    queue = "--queue" in words
    rebuild = "--rebuild" in words
    words = [word for word in words if word not in ("--queue", "--rebuild")]
    if not words:
        return Reply("Usage: `/deploy [SERVICE] ENV [REF] [--queue] [--rebuild]`")
    service = None
    if len(words) >= 2 and words[0] in config.services and words[1] in config.environments:
        service, words = words[0], words[1:]
    if len(words) > 2:
        return Reply(
            "Usage: `/deploy [SERVICE] ENV [REF] [--queue] [--rebuild]`, e.g. `/deploy prod v1.4.2`."
        )
    found = _environment(words[0], config)
    if isinstance(found, Reply):
        return found
    if service is not None and config.environments[found].service != service:
        return Reply(f"`{found}` deploys `{config.environments[found].service}`, not `{service}`.")
    ref = words[1] if len(words) == 2 else None
    if ref is not None and not _REF.match(ref):
        return Reply("A ref is a branch, tag or commit: letters, digits and `._/-`, e.g. `v1.4.2`.")
    return Deploy(found, ref, service, queue, rebuild=rebuild)
