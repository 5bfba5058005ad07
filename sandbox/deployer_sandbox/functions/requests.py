"""What a Cloud Functions v2 request asks for, read as Google reads it: what it refuses
before a build (`check_function`, `check_build_account`), an update's mask over the
writable fields, an operation's metadata, and how a failed deploy of the underlying
Cloud Run service is worded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import functions_v2
from google.protobuf import field_mask_pb2

from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import invalid, not_found
from deployer_sandbox.functions.names import PYTHON_RUNTIME, FunctionName

OperationType: Any = functions_v2.OperationType

# Fields a caller writes; the rest are output only and ignored in a mask
# ("Output only" in `Function`'s comments).
WRITABLE = ("description", "build_config", "service_config", "event_trigger", "labels",
             "kms_key_name", "environment")  # fmt: skip
OUTPUT_ONLY = ("name", "state", "update_time", "state_messages", "url", "create_time",
                "satisfies_pzs")  # fmt: skip


def check_function(
    function: functions_v2.Function,
    read_upload: Callable[[str, str], bytes | None],
    account_exists: Callable[[str], bool] | None,
) -> None:
    """What Cloud Functions refuses before any build starts (INVALID_ARGUMENT)."""
    build_config = function.build_config
    if not build_config.runtime:
        # "Required when deploying a new function, optional when updating an existing
        # function" (`BuildConfig.runtime`); an update keeps the stored one (merged).
        raise invalid("Runtime is required (function.build_config.runtime).")
    if not PYTHON_RUNTIME.fullmatch(build_config.runtime):
        raise invalid(
            f"Runtime {build_config.runtime!r} is not served by the sandbox: it runs "
            "Python runtimes (python310, python311, python312...) only."
        )
    if function.event_trigger.trigger or function.event_trigger.event_type:
        raise invalid("The sandbox serves HTTP functions only (no event_trigger).")
    source = build_config.source
    if source.repo_source.repo_name or source.git_uri:
        raise invalid("The sandbox builds functions from storage_source only.")
    storage = source.storage_source
    if not storage.bucket or not storage.object_:
        raise invalid(
            "function.build_config.source.storage_source: bucket and object are required."
        )
    if read_upload(storage.bucket, storage.object_) is None:
        # The object names no upload: the build could not fetch it (the sandbox answers
        # before building; no Google wording at hand).
        raise invalid(
            f"Cannot access the source: gs://{storage.bucket}/{storage.object_} does "
            "not exist. Upload it to the URL GenerateUploadUrl answered first."
        )
    check_build_account(build_config.service_account, account_exists)
    for index, secret in enumerate(function.service_config.secret_environment_variables):
        if not secret.key or not secret.secret:
            raise invalid(
                f"function.service_config.secret_environment_variables[{index}]: "
                "key and secret are required."
            )


def check_build_account(account: str, account_exists: Callable[[str], bool] | None) -> None:
    """`BuildConfig.service_account`: "Service account to be used for building the
    container. The format of this field is
    `projects/{projectId}/serviceAccounts/{serviceAccountEmail}`" (functions.proto)."""
    if not account:
        return  # the project's default build account
    project, _, email = account.removeprefix("projects/").partition("/serviceAccounts/")
    if not account.startswith("projects/") or not project or "@" not in email:
        raise invalid(
            f"Invalid build service account {account!r}: expected "
            "projects/{projectId}/serviceAccounts/{serviceAccountEmail}."
        )
    if account_exists is not None and not account_exists(email):
        # Google's answer for a missing account, as firebase-tools prints it
        # (firebase/firebase-tools#8841): "HTTP Error: 404, Service account
        # projects/-/serviceAccounts/EMAIL was not found."
        raise not_found(f"Service account projects/-/serviceAccounts/{email} was not found.")


def run_failure(name: FunctionName, message: str) -> str:
    """Cloud Functions' wrapping of Cloud Run's refusal (as gcloud prints a failed deploy)."""
    return f"Could not create or update Cloud Run service {name.function}, {message}"


def operation_metadata(
    name: FunctionName, kind: OperationType | None, done: bool = False
) -> functions_v2.OperationMetadata:
    metadata = functions_v2.OperationMetadata(create_time=now(), target=name.name, api_version="v2")
    if kind is not None:
        metadata.operation_type = kind
        metadata.verb = {
            OperationType.CREATE_FUNCTION: "create",
            OperationType.UPDATE_FUNCTION: "update",
            OperationType.DELETE_FUNCTION: "delete",
        }[kind]
    if done:
        metadata.end_time = now()
    return metadata


def merged_update(
    current: functions_v2.Function, given: functions_v2.Function, paths: list[str]
) -> functions_v2.Function:
    """The function an update asks for: with no mask, every writable field from `given`
    ("If no field mask is provided, all fields will be updated", `UpdateFunctionRequest`),
    the stored runtime kept when `given` has none; with a mask, only its paths."""
    if not paths:
        merged = clone(current)
        for field in WRITABLE:
            setattr(merged, field, getattr(given, field))
        if not merged.build_config.runtime:
            merged.build_config.runtime = current.build_config.runtime
        return merged
    fields = [snake(path) for path in paths if snake(path).split(".")[0] not in OUTPUT_ONLY]
    mask = field_mask_pb2.FieldMask(paths=fields)
    descriptor: Any = functions_v2.Function.pb().DESCRIPTOR
    if not mask.IsValidForDescriptor(descriptor):
        raise invalid(f"Invalid update_mask: {', '.join(paths)}")
    target = functions_v2.Function.pb(clone(current))
    mask.MergeMessage(functions_v2.Function.pb(given), target, replace_repeated_field=True)
    merged_function: functions_v2.Function = functions_v2.Function.wrap(target)
    return merged_function


def snake(path: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in path)
