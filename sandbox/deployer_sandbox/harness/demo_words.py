"""How the demo reads what it sees and says it: which button promotes where, and the
short forms of digests, traffic shares, build counts and a traffic run's answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from deployer.front.approval_messages import PROMOTE_BUTTON


def statuses(answer: dict[str, Any]) -> str:
    """ "1580 answered 200, 20 answered 500" from a loopback traffic answer."""
    counts = answer.get("statuses") or {}
    said = [f"{count} answered {status}" for status, count in sorted(counts.items())]
    if answer.get("errors"):
        said.append(f"{answer['errors']} got no answer")
    return ", ".join(said) or "no answers"


def promotes_to(environment: str) -> Callable[[dict[str, Any]], bool]:
    """Accepts a "Promote to ENV" button (`deploy_promote:ENV`, value {"to": ENV, ...})."""

    def wanted(button: dict[str, Any]) -> bool:
        if str(button.get("action_id", "")) != PROMOTE_BUTTON + environment:
            return False
        try:
            return bool(json.loads(str(button.get("value", ""))).get("to") == environment)
        except (ValueError, AttributeError):
            return False

    return wanted


def digest(image: str | None) -> str:
    return (image or "").partition("@")[2][:19] or "(no digest)"


def shares(routes: list[tuple[str, int, str]]) -> str:
    """`backend-a 100%, backend-b 0% (tag candidate)`: what serves, and what waits tagged."""
    said = [
        f"{revision} {percent}%" + (f" (tag {tag})" if tag else "")
        for revision, percent, tag in routes
    ]
    return ", ".join(said) or "nothing"


def count_builds(count: int) -> str:
    return f"{count} build" + ("" if count == 1 else "s")
