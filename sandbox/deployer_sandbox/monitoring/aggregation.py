"""Alignment and reduction of the request metrics, as ListTimeSeries' `aggregation` asks.

The rules come from the Aggregation comments of google/monitoring/v3/common.proto
(google/cloud/monitoring_v3/types/common.py in the installed client):

- `alignment_period` "must be at least 60 seconds", and is required with any aligner but
  ALIGN_NONE; a `cross_series_reducer` needs an aligner other than ALIGN_NONE. Both are
  INVALID_ARGUMENT here, as the API answers.
- aligners served (input kind DELTA):

      ALIGN_DELTA, ALIGN_SUM   the period's sum; DELTA, value type kept (INT64 count, or the
                               DISTRIBUTION of the period's latencies)
      ALIGN_RATE               count / period seconds; GAUGE DOUBLE ("numeric values" only:
                               INVALID_ARGUMENT on request_latencies)
      ALIGN_PERCENTILE_99/95/50/05   the percentile of the period's latencies; GAUGE DOUBLE
                               ("distribution values" only: INVALID_ARGUMENT on request_count)

- reducers served, over the aligned series of one group:

      REDUCE_NONE              each aligned series as it is
      REDUCE_SUM               sum (distributions merge); value type kept
      REDUCE_MEAN              mean (of a distribution's samples); DOUBLE
      REDUCE_MIN, REDUCE_MAX   numeric only; value type kept
      REDUCE_COUNT             how many series have a point in the period; INT64
      REDUCE_PERCENTILE_99/95/50/05   percentile of the values (of a distribution's
                               samples); DOUBLE

  `group_by_fields` partitions the series before reducing; "fields not specified in
  group_by_fields are aggregated away", so a reduced series keeps only its group's labels.

Alignment periods end at the interval's end time and step back by `alignment_period`,
each a half-open (start, end] span as the interval is for reads (TimeInterval). A DELTA
point spans its period; a GAUGE point has start = end = the period's end. A period with no
request yields no point (Monitoring's interpolation of DELTA gaps is not modelled). Points
are newest first: "returned in reverse time order (most recent to oldest)"
(ListTimeSeriesRequest.order_by).

Percentiles are exact over the samples, interpolated linearly between the nearest ranks:
Monitoring estimates them from the distribution's histogram buckets, so its figures can
differ slightly from the sandbox's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from google.api.metric_pb2 import MetricDescriptor
from google.cloud.monitoring_v3 import Aggregation

from deployer_sandbox.common.rpc import invalid
from deployer_sandbox.monitoring.filters import FIELDS
from deployer_sandbox.monitoring.metrics import (
    REQUEST_COUNT,
    REQUEST_LATENCIES,
    SAMPLE_SECONDS,
    Sample,
    SeriesKey,
)

Aligner = Aggregation.Aligner
Reducer = Aggregation.Reducer
Kind = MetricDescriptor.MetricKind
ValueType = MetricDescriptor.ValueType

MIN_ALIGNMENT_SECONDS = 60
GROUP_BY_FIELDS = tuple(f for f in FIELDS if f != "metric.type")


@dataclass(frozen=True)
class Distribution:
    """A DISTRIBUTION value: the latencies (ms) it summarizes."""

    samples: tuple[float, ...]


Value = int | float | Distribution


@dataclass(frozen=True)
class Point:
    start: float  # epoch seconds; equals `end` for a GAUGE point
    end: float
    value: Value


@dataclass(frozen=True)
class Series:
    key: SeriesKey
    kind: int  # MetricDescriptor.MetricKind
    value_type: int  # MetricDescriptor.ValueType
    points: list[Point]  # newest first


def raw(metric_type: str, grouped: dict[SeriesKey, list[Sample]]) -> list[Series]:
    """No aggregation (ALIGN_NONE): one DELTA point per 60 s sampling window with requests,
    as Cloud Run writes them."""
    result = []
    for key, samples in grouped.items():
        windows: dict[float, list[Sample]] = {}
        for sample in samples:
            start = math.floor(sample.at / SAMPLE_SECONDS) * SAMPLE_SECONDS
            windows.setdefault(start, []).append(sample)
        points = [
            Point(start, start + SAMPLE_SECONDS, _delta(metric_type, found))
            for start, found in sorted(windows.items(), reverse=True)
        ]
        result.append(Series(key, Kind.DELTA, _value_type(metric_type), points))
    return result


def aggregate(
    metric_type: str,
    grouped: dict[SeriesKey, list[Sample]],
    aggregation: Aggregation,
    interval_end: float,
    interval_start: float,
) -> list[Series]:
    """The series `aggregation` asks for over the samples in (interval_start, interval_end]."""
    aligner = Aligner(aggregation.per_series_aligner)
    reducer = Reducer(aggregation.cross_series_reducer)
    if aligner == Aligner.ALIGN_NONE:
        if reducer != Reducer.REDUCE_NONE:
            raise invalid(
                "aggregation.per_series_aligner: a cross_series_reducer needs a per_series_aligner "
                "other than ALIGN_NONE."
            )
        return raw(metric_type, grouped)
    period = _seconds(aggregation.alignment_period)
    if period < MIN_ALIGNMENT_SECONDS:
        raise invalid(
            f"aggregation.alignment_period: {period:g}s is too short; it must be at least "
            f"{MIN_ALIGNMENT_SECONDS} seconds."
        )
    align, kind, value_type = _aligner(aligner, metric_type, period)
    aligned = [
        Series(
            key,
            kind,
            value_type,
            _align(samples, align, kind, period, interval_start, interval_end),
        )
        for key, samples in grouped.items()
    ]
    aligned = [series for series in aligned if series.points]
    if reducer == Reducer.REDUCE_NONE:
        return aligned
    return _reduce(aligned, reducer, list(aggregation.group_by_fields))


# --- alignment -------------------------------------------------------------------------

AlignFn = Callable[[list[Sample]], Value]


def _aligner(aligner: Aligner, metric_type: str, period: float) -> tuple[AlignFn, int, int]:
    """What `aligner` computes from one period's samples, and the kind and type it yields."""
    if aligner in (Aligner.ALIGN_DELTA, Aligner.ALIGN_SUM):
        return (lambda s: _delta(metric_type, s)), Kind.DELTA, _value_type(metric_type)
    if aligner == Aligner.ALIGN_RATE:
        if metric_type != REQUEST_COUNT:
            raise invalid(
                f"aggregation.per_series_aligner: ALIGN_RATE needs numeric values; {metric_type} "
                "is a DISTRIBUTION (use ALIGN_DELTA or an ALIGN_PERCENTILE_*)."
            )
        return (lambda s: len(s) / period), Kind.GAUGE, ValueType.DOUBLE
    rank = _ALIGN_PERCENTILES.get(aligner)
    if rank is not None:
        if metric_type != REQUEST_LATENCIES:
            raise invalid(
                f"aggregation.per_series_aligner: {aligner.name} needs distribution values; "
                f"{metric_type} is INT64."
            )
        return (lambda s: percentile([x.latency_ms for x in s], rank)), Kind.GAUGE, ValueType.DOUBLE
    raise invalid(
        f"aggregation.per_series_aligner: {aligner.name} is not supported by the sandbox's "
        "Cloud Monitoring, which serves ALIGN_NONE, ALIGN_DELTA, ALIGN_SUM, ALIGN_RATE and "
        "ALIGN_PERCENTILE_99/95/50/05."
    )


_ALIGN_PERCENTILES = {
    Aligner.ALIGN_PERCENTILE_99: 99.0,
    Aligner.ALIGN_PERCENTILE_95: 95.0,
    Aligner.ALIGN_PERCENTILE_50: 50.0,
    Aligner.ALIGN_PERCENTILE_05: 5.0,
}


def _align(
    samples: list[Sample], align: AlignFn, kind: int, period: float, start: float, end: float
) -> list[Point]:
    by_period: dict[int, list[Sample]] = {}
    for sample in samples:
        # Period k (0 = newest) is (end - (k+1)*period, end - k*period].
        by_period.setdefault(math.floor((end - sample.at) / period), []).append(sample)
    points = []
    for k in sorted(by_period):
        period_end = end - k * period
        period_start = max(period_end - period, start)
        value = align(by_period[k])
        points.append(Point(period_end if kind == Kind.GAUGE else period_start, period_end, value))
    return points


def _delta(metric_type: str, samples: Sequence[Sample]) -> Value:
    if metric_type == REQUEST_COUNT:
        return len(samples)
    return Distribution(tuple(sample.latency_ms for sample in samples))


def _value_type(metric_type: str) -> int:
    return int(ValueType.INT64 if metric_type == REQUEST_COUNT else ValueType.DISTRIBUTION)


def _seconds(duration: object) -> float:
    # proto-plus hands a Duration field over as a datetime.timedelta.
    assert isinstance(duration, timedelta)
    return duration.total_seconds()


# --- reduction -------------------------------------------------------------------------

_REDUCE_PERCENTILES = {
    Reducer.REDUCE_PERCENTILE_99: 99.0,
    Reducer.REDUCE_PERCENTILE_95: 95.0,
    Reducer.REDUCE_PERCENTILE_50: 50.0,
    Reducer.REDUCE_PERCENTILE_05: 5.0,
}


def _reduce(aligned: list[Series], reducer: Reducer, group_by: list[str]) -> list[Series]:
    for field in group_by:
        if field not in GROUP_BY_FIELDS:
            raise invalid(
                f"aggregation.group_by_fields: '{field}' is not a field of these series; the "
                f"sandbox's Cloud Monitoring groups by {', '.join(GROUP_BY_FIELDS)}."
            )
    if not aligned:
        return []
    kind, value_type = _reduced_type(reducer, aligned[0])
    groups: dict[SeriesKey, list[Series]] = {}
    for series in aligned:
        groups.setdefault(_group_key(series.key, group_by), []).append(series)
    result = []
    for key, members in groups.items():
        by_end: dict[float, list[Point]] = {}
        for series in members:
            for point in series.points:
                by_end.setdefault(point.end, []).append(point)
        points = [
            Point(found[0].start, end, _combine(reducer, [p.value for p in found]))
            for end, found in sorted(by_end.items(), reverse=True)
        ]
        result.append(Series(key, kind, value_type, points))
    return result


def _reduced_type(reducer: Reducer, sample: Series) -> tuple[int, int]:
    numeric = sample.value_type != ValueType.DISTRIBUTION
    if reducer == Reducer.REDUCE_SUM:
        return sample.kind, sample.value_type
    if reducer in (Reducer.REDUCE_MIN, Reducer.REDUCE_MAX):
        if not numeric:
            raise invalid(
                f"aggregation.cross_series_reducer: {reducer.name} needs numeric values; the "
                "aligned series are distributions."
            )
        return sample.kind, sample.value_type
    if reducer == Reducer.REDUCE_COUNT:
        return sample.kind, ValueType.INT64
    if reducer == Reducer.REDUCE_MEAN or reducer in _REDUCE_PERCENTILES:
        return sample.kind, ValueType.DOUBLE
    raise invalid(
        f"aggregation.cross_series_reducer: {reducer.name} is not supported by the sandbox's "
        "Cloud Monitoring, which serves REDUCE_NONE, REDUCE_SUM, REDUCE_MEAN, REDUCE_MIN, "
        "REDUCE_MAX, REDUCE_COUNT and REDUCE_PERCENTILE_99/95/50/05."
    )


def _group_key(key: SeriesKey, group_by: list[str]) -> SeriesKey:
    """The labels a reduced series keeps: those of `group_by` (resource.type is implicit)."""
    kept = {field: key.field(field) for field in group_by if key.field(field) is not None}
    resource = tuple(
        sorted(
            (f.removeprefix("resource.labels."), v)
            for f, v in kept.items()
            if f.startswith("resource.labels.") and v is not None
        )
    )
    metric = tuple(
        sorted(
            (f.removeprefix("metric.labels."), v)
            for f, v in kept.items()
            if f.startswith("metric.labels.") and v is not None
        )
    )
    return SeriesKey(resource, metric)


def _combine(reducer: Reducer, values: list[Value]) -> Value:
    if reducer == Reducer.REDUCE_COUNT:
        return len(values)
    if isinstance(values[0], Distribution):
        merged = [x for value in values if isinstance(value, Distribution) for x in value.samples]
        if reducer == Reducer.REDUCE_SUM:
            return Distribution(tuple(merged))
        if reducer == Reducer.REDUCE_MEAN:
            return sum(merged) / len(merged) if merged else 0.0
        return percentile(merged, _REDUCE_PERCENTILES[reducer])
    numbers = [float(v) for v in values if not isinstance(v, Distribution)]
    if reducer == Reducer.REDUCE_SUM:
        total = sum(numbers)
        return int(total) if isinstance(values[0], int) else total
    if reducer == Reducer.REDUCE_MEAN:
        return sum(numbers) / len(numbers)
    if reducer == Reducer.REDUCE_MIN:
        return min(values, key=float)  # type: ignore[arg-type]
    if reducer == Reducer.REDUCE_MAX:
        return max(values, key=float)  # type: ignore[arg-type]
    return percentile(numbers, _REDUCE_PERCENTILES[reducer])


def percentile(values: Sequence[float], rank: float) -> float:
    """The `rank`th percentile, interpolating linearly between the closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * rank / 100.0
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
