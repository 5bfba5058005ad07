"""The sandbox's Logging filter language: conjunctive comparisons parsed into row tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from deployer_sandbox.cloud_logging.sources import LogRow, Severity
from deployer_sandbox.common.rpc import invalid

MAX_FILTER_CHARS = 20_000

_SEVERITIES: dict[str, int] = dict(Severity.items())
_LABELS = (
    "project_id",
    "location",
    "service_name",
    "revision_name",
    "configuration_name",
    "build_id",
    "job_name",
)
# The resource label fields a filter may name: field -> label.
LABEL_FIELDS = {f"resource.labels.{label}": label for label in _LABELS}
_SUPPORTED = (
    "resource.type, resource.labels.{"
    + ",".join(_LABELS)
    + '}, labels.KEY (or labels."KEY"), logName, severity, timestamp and textPayload, joined by AND'
)
_COMPARISON = re.compile(
    r'(?P<field>[A-Za-z_]\w*(?:\.\w+|\."(?:[^"\\]|\\.)*")*)\s*(?P<op>>=|<=|!=|=~|!~|=|>|<|:)\s*'
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s()"]+)'
)
_UNSUPPORTED_WORDS = {"OR", "NOT"}
# An entry label: `labels.build_step`, or quoted when the key holds other characters
# (`labels."run.googleapis.com/execution_name"`, as the Logging query language writes it).
_ENTRY_LABEL = re.compile(r'labels\.(\w+|"(?:[^"\\]|\\.)*")')


@dataclass(frozen=True)
class Clause:
    """One comparison of a filter, and the test a row must pass."""

    field: str
    op: str
    value: str
    test: Callable[[LogRow], bool]


def parse_filter(text: str) -> list[Clause]:
    """The comparisons of a conjunctive Logging filter; INVALID_ARGUMENT for the rest."""
    if len(text) > MAX_FILTER_CHARS:
        raise invalid(f"filter: longer than {MAX_FILTER_CHARS} characters.")
    clauses: list[Clause] = []
    position = 0
    expect_comparison = True
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        word = re.match(r"[A-Za-z]+\b", text[position:])
        if word and word.group(0) == "AND":
            if expect_comparison:
                raise invalid(f"filter: misplaced AND at character {position} in: {text}")
            position += 3
            expect_comparison = True
            continue
        if (word and word.group(0) in _UNSUPPORTED_WORDS) or text[position] in "()-":
            shown = word.group(0) if word else text[position]
            raise invalid(
                f"filter: '{shown}' is not supported by the sandbox's Cloud Logging, which "
                f"understands only comparisons of {_SUPPORTED}. Filter: {text}"
            )
        match = _COMPARISON.match(text, position)
        if match is None:
            raise invalid(
                f"filter: cannot read a comparison at character {position} "
                f"('{text[position : position + 30]}'); the sandbox's Cloud Logging understands "
                f"comparisons of {_SUPPORTED}. Filter: {text}"
            )
        clauses.append(_clause(match.group("field"), match.group("op"), _unquote(match["value"])))
        position = match.end()
        expect_comparison = False
    if clauses and expect_comparison:
        raise invalid(f"filter: ends with AND: {text}")
    return clauses


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _unsupported(field: str, op: str, allowed: str) -> Any:
    return invalid(
        f"filter: the sandbox's Cloud Logging supports {field} only with {allowed}, not '{op}'."
    )


def _clause(field: str, op: str, value: str) -> Clause:
    labels = field in LABEL_FIELDS or _ENTRY_LABEL.fullmatch(field) is not None
    if field == "resource.type" or labels or field == "logName":
        if op not in ("=", "!="):
            raise _unsupported(field, op, "= and !=")
        get = _getter(field)

        def equal(got: str | None, wanted: str) -> bool:
            if got is None:  # a label the entry lacks
                return False
            return unquote(got) == unquote(wanted) if field == "logName" else got == wanted

        if op == "=":
            return Clause(field, op, value, lambda row: equal(get(row), value))
        return Clause(field, op, value, lambda row: not equal(get(row), value))
    if field == "severity":
        level = _severity(value)
        return Clause(field, op, value, _ordered(op, lambda row: row.severity, level, field))
    if field == "timestamp":
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise invalid(
                f"filter: timestamp value '{value}' is not an RFC 3339 time "
                '(for example "2024-05-01T12:00:00Z").'
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return Clause(field, op, value, _ordered(op, lambda row: row.timestamp, stamp, field))
    if field == "textPayload":
        if op == "=":
            return Clause(field, op, value, lambda row: row.text == value)
        if op == ":":
            needle = value.lower()
            return Clause(field, op, value, lambda row: needle in row.text.lower())
        if op == "=~":
            try:
                pattern = re.compile(value)
            except re.error as error:
                raise invalid(f"filter: invalid regular expression '{value}': {error}") from None
            return Clause(field, op, value, lambda row: pattern.search(row.text) is not None)
        raise _unsupported(field, op, "=, : and =~")
    raise invalid(
        f"filter: the field '{field}' is not supported by the sandbox's Cloud Logging; "
        f"it understands comparisons of {_SUPPORTED}."
    )


def _getter(field: str) -> Callable[[LogRow], str | None]:
    if field == "resource.type":
        return lambda row: row.resource_type
    if field == "logName":
        return lambda row: row.log_name
    entry_label = _ENTRY_LABEL.fullmatch(field)
    if entry_label is not None:
        key = _unquote(entry_label.group(1))
        return lambda row: row.entry_labels.get(key)
    label = LABEL_FIELDS[field]
    return lambda row: row.labels.get(label)


def _severity(value: str) -> int:
    if value.isdigit():
        return int(value)
    level = _SEVERITIES.get(value.upper())
    if level is None:
        raise invalid(f"filter: unknown severity '{value}'; use one of {', '.join(_SEVERITIES)}.")
    return level


def _ordered(
    op: str, get: Callable[[LogRow], Any], bound: Any, field: str
) -> Callable[[LogRow], bool]:
    tests: dict[str, Callable[[Any], bool]] = {
        "=": lambda got: bool(got == bound),
        "!=": lambda got: bool(got != bound),
        "<": lambda got: bool(got < bound),
        "<=": lambda got: bool(got <= bound),
        ">": lambda got: bool(got > bound),
        ">=": lambda got: bool(got >= bound),
    }
    test = tests.get(op)
    if test is None:
        raise _unsupported(field, op, "=, !=, <, <=, > and >=")
    return lambda row: test(get(row))
