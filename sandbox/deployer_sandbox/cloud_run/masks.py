"""What an `UpdateService` writes (its `update_mask`), and the drift of what reads return.

Update masks (AIP-134, and `UpdateServiceRequest.update_mask`: "The list of fields to
be updated"): without a mask, or with `*`, the request's service replaces the spec;
with one, only the named fields are taken from the request, everything else stays as
stored. A path names a field of `Service` (`traffic`, `template`,
`scaling.min_instance_count`; snake or camel case), merged as protobuf's
`FieldMask.MergeMessage` merges (a named message or list is replaced whole).

Whatever the mask, a request whose `template.revision` names an existing revision
with a different configuration is refused (ALREADY_EXISTS, Cloud Run's wording):
Cloud Run checks the body's template even when the mask leaves it out
(google-cloud-python#14259: a `scaling.minInstanceCount` mask answered 409
"Revision named '…' with different configuration already exists").

Template drift (`{"kind": "template_drift"}`, until cleared): reads return the
template with a server-filled default spelled differently from how it is stored
(a container's CPU limit `1000m` read back as `1`, and the other way round), as
Cloud Run's own normalisation makes reads differ from what was written. A client
that sends a read template back under its revision's name meets the refusal
above (google-cloud-python#11870; pipecd stopped re-sending revision configs).
"""

from __future__ import annotations

import re

from google.cloud import run_v2
from google.protobuf.field_mask_pb2 import FieldMask

from deployer_sandbox.cloud_run.resources import SERVICE_OUTPUT_FIELDS
from deployer_sandbox.common.protos import clone
from deployer_sandbox.common.rpc import invalid

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# The fields of Service an owner may write: everything but Cloud Run's output fields.
WRITABLE = frozenset(
    field.name
    for field in run_v2.Service.pb().DESCRIPTOR.fields
    if field.name not in (*SERVICE_OUTPUT_FIELDS, "name", "threat_detection_enabled")
)


def masked_paths(paths: list[str]) -> list[str] | None:
    """The paths an update writes, in snake case (None: all), or INVALID_ARGUMENT."""
    if not paths or list(paths) == ["*"]:
        return None
    snake = [".".join(_CAMEL.sub("_", part).lower() for part in path.split(".")) for path in paths]
    for path, original in zip(snake, paths, strict=True):
        head = path.split(".", 1)[0]
        valid = FieldMask(paths=[path]).IsValidForDescriptor(run_v2.Service.pb().DESCRIPTOR)
        if head not in WRITABLE or not valid:
            raise invalid(
                f"Invalid field mask path '{original}': not a writable field of Service "
                f"(writable: {', '.join(sorted(WRITABLE))})."
            )
    return snake


def merged_spec(stored: run_v2.Service, given: run_v2.Service, paths: list[str]) -> run_v2.Service:
    """`stored` with the masked `paths` taken from `given`."""
    merged = run_v2.Service.pb(clone(stored))
    FieldMask(paths=paths).MergeMessage(
        run_v2.Service.pb(given), merged, replace_message_field=True, replace_repeated_field=True
    )
    wrapped: run_v2.Service = run_v2.Service.wrap(merged)
    return wrapped


def drifted(service: run_v2.Service) -> run_v2.Service:
    """`service` as reads show it while `template_drift` is armed."""
    shown = clone(service)
    for container in shown.template.containers:
        cpu = container.resources.limits.get("cpu")
        if cpu is not None:
            container.resources.limits["cpu"] = _respelled(cpu)
    return shown


def _respelled(cpu: str) -> str:
    """The same CPU quantity in the other spelling: `1000m` <-> `1`, `500m` <-> `0.5`."""
    if cpu.endswith("m") and cpu[:-1].isdigit():
        return f"{int(cpu[:-1]) / 1000:g}"
    try:
        return f"{round(float(cpu) * 1000)}m"
    except ValueError:
        return cpu  # not a quantity Cloud Run would have stored
