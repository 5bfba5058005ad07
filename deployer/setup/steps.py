"""The step framework: each step reads, compares, and applies only the difference.

A step is a name and a function of the `Setup` context that returns what it found
(`Outcome`, and a short detail with no secret in it). In a dry run a step changes
nothing and says `planned` where it would have. A Google error stops the run with
the step's name and a fix (`SetupFailed`); what ran before it stays done, and a
second run picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from google.api_core import exceptions

from deployer.errors import DeployerError
from deployer.pipeline.ports import SecretProblem

if TYPE_CHECKING:
    from deployer.setup.context import Setup

# Every Google call a step makes waits at most this long (operations included).
CALL_TIMEOUT = 30.0
# An operation (enabling APIs, creating the database or the job) may take minutes at Google.
OPERATION_TIMEOUT = 300.0


class Outcome(StrEnum):
    PLANNED = "planned"  # a dry run would change this
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    MISSING = "missing"  # needs something only the user can give (a secret's value)


@dataclass(frozen=True)
class StepResult:
    step: str
    outcome: Outcome
    detail: str = ""

    def line(self) -> str:
        """`worker job: changed (created, task timeout 3660 s)`."""
        return f"{self.step}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


class SetupFailed(DeployerError):
    """A step could not finish: its name, what Google said (shortened), and the fix."""

    def __init__(self, step: str, problem: str, fix: str) -> None:
        super().__init__(f"setup stopped at {step}: {problem}. {fix}")
        self.step = step


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Setup], StepResult]


@dataclass
class Changes:
    """What a step's parts did, to say as one line: `added 3, kept 2`."""

    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def result(self, step: str, dry_run: bool, none_needed: str = "as wanted") -> StepResult:
        if self.done:
            outcome = Outcome.PLANNED if dry_run else Outcome.CHANGED
            return StepResult(step, outcome, "; ".join([*self.done, *self.notes]))
        return StepResult(step, Outcome.UNCHANGED, "; ".join(self.notes) or none_needed)


def fix_for(error: exceptions.GoogleAPICallError, project: str) -> str:
    """What to do about a Google error, in a sentence."""
    if isinstance(error, exceptions.PermissionDenied | exceptions.Unauthenticated):
        return (
            f"Run setup as a project owner of {project} (gcloud auth application-default "
            "login), or ask one to run it"
        )
    if isinstance(error, exceptions.FailedPrecondition):
        return "Fix what Google names above, then run setup again"
    if isinstance(error, exceptions.DeadlineExceeded | exceptions.ServiceUnavailable):
        return "Google did not answer in time; run setup again (it resumes where it stopped)"
    return "Run setup again; if it fails the same way, fix what Google names above"


def short(error: exceptions.GoogleAPICallError) -> str:
    """Google's message, on one line and short enough to read."""
    text = " ".join(str(error.message or error).split())
    return text if len(text) <= 200 else text[:197] + "..."


def run_steps(steps: Sequence[Step], setup: Setup) -> Iterator[StepResult]:
    """Run `steps` in order, yielding each result as it comes; SetupFailed stops the run."""
    for step in steps:
        try:
            yield step.run(setup)
        except exceptions.GoogleAPICallError as error:
            raise SetupFailed(step.name, short(error), fix_for(error, setup.project)) from None
        except SecretProblem as problem:
            raise SetupFailed(
                step.name, str(problem), "Run setup again once that is fixed"
            ) from None
        except TimeoutError:
            raise SetupFailed(
                step.name,
                "Google did not finish in time",
                "Run setup again: it resumes where it stopped",
            ) from None


def summary(results: Sequence[StepResult], dry_run: bool) -> str:
    """`4 changed, 9 unchanged`; a dry run: `4 planned, nothing changed`."""
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in Outcome}
    missing = f", {counts[Outcome.MISSING]} missing" if counts[Outcome.MISSING] else ""
    if dry_run:
        return f"{counts[Outcome.PLANNED]} planned, nothing changed{missing}"
    return f"{counts[Outcome.CHANGED]} changed, {counts[Outcome.UNCHANGED]} unchanged{missing}"
