"""The sandbox's Monitoring filter language: equalities of quoted strings joined by AND.

What a client sends for Cloud Run's request metrics
(cloud.google.com/monitoring/api/v3/filters):

    metric.type = "run.googleapis.com/request_count"
      AND resource.type = "cloud_run_revision"
      AND resource.labels.service_name = "notes"
      [AND resource.labels.revision_name = "notes-00002-abc"]
      [AND metric.labels.response_code_class = "5xx"]

`metric.type` is required: ListTimeSeries' filter "must specify a single metric type"
(google/monitoring/v3/metric_service.proto, ListTimeSeriesRequest.filter). Fields are
`metric.type`, `resource.type`, `resource.labels.{project_id,service_name,revision_name,
location,configuration_name}` and `metric.labels.{response_code,response_code_class}`.
Anything else the filter language has (OR, NOT, !=, `:`, `starts_with(...)`, unquoted
values, parentheses, other fields, a field named twice) is INVALID_ARGUMENT naming the
part not understood, never silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployer_sandbox.common.rpc import invalid
from deployer_sandbox.monitoring.metrics import METRIC_LABELS, RESOURCE_LABELS

MAX_FILTER_CHARS = 20_000

LABEL_FIELDS = (
    *(f"resource.labels.{label}" for label in RESOURCE_LABELS),
    *(f"metric.labels.{label}" for label in METRIC_LABELS),
)
FIELDS = ("metric.type", "resource.type", *LABEL_FIELDS)

_EQUALITY = re.compile(r'\s*(?P<field>[A-Za-z_][\w.]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*')
_AND = re.compile(r"AND\b\s*")


@dataclass(frozen=True)
class Selection:
    """A parsed filter: the metric type, the resource type if named, and label equalities."""

    metric_type: str
    resource_type: str | None
    labels: dict[str, str]  # field (`resource.labels.X` / `metric.labels.X`) -> value


def parse_filter(text: str) -> Selection:
    """The equalities of `text`; INVALID_ARGUMENT naming the first part not understood."""
    if not text.strip():
        raise invalid('filter: required; it must name a metric type, e.g. metric.type = "...".')
    if len(text) > MAX_FILTER_CHARS:
        raise invalid(f"filter: longer than {MAX_FILTER_CHARS} characters.")
    found: dict[str, str] = {}
    position = 0
    while True:
        match = _EQUALITY.match(text, position)
        if match is None:
            raise _not_understood(text, position)
        field = match.group("field")
        if field not in FIELDS:
            raise invalid(
                f"filter: the field '{field}' is not supported by the sandbox's Cloud "
                f"Monitoring, which understands {', '.join(FIELDS)}. Filter: {text}"
            )
        if field in found:
            raise invalid(f"filter: '{field}' is named twice. Filter: {text}")
        found[field] = re.sub(r"\\(.)", r"\1", match.group("value"))
        position = match.end()
        if position == len(text):
            break
        joined = _AND.match(text, position)
        if joined is None or joined.end() == len(text):
            raise _not_understood(text, position)
        position = joined.end()
    if "metric.type" not in found:
        raise invalid(
            f'filter: it must specify a metric type (metric.type = "..."). Filter: {text}'
        )
    metric_type = found.pop("metric.type")
    resource_type = found.pop("resource.type", None)
    return Selection(metric_type, resource_type, found)


def _not_understood(text: str, position: int) -> Exception:
    part = text[position : position + 40].strip() or "(end of filter)"
    return invalid(
        f"filter: cannot read '{part}' at character {position}; the sandbox's Cloud Monitoring "
        'understands only FIELD = "VALUE" comparisons joined by AND. Filter: ' + text
    )
