"""Names of Cloud Functions v2 resources, and the errors about them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployer_sandbox.cloud_run.names import Location as Location

# A function's location is spelled and checked as Cloud Run's: 2nd-gen functions are
# Cloud Run services in the same projects/P/locations/L.
from deployer_sandbox.cloud_run.names import parse_location as parse_location
from deployer_sandbox.common.rpc import RpcError, invalid, not_found

# "This value should be 4-63 characters, and valid characters are /[a-z][0-9]-/"
# (`CreateFunctionRequest.function_id`, google/cloud/functions/v2/functions.proto); a
# letter first and no hyphen last, as Cloud Run service ids, since the function's
# service takes its name.
_FUNCTION_ID = re.compile(r"[a-z][a-z0-9-]{2,61}[a-z0-9]")
# `GenerateUploadUrlResponse`: the runtimes this sandbox can run are Python's.
PYTHON_RUNTIME = re.compile(r"python3\d{1,2}")


@dataclass(frozen=True)
class FunctionName:
    project: str
    location: str
    function: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/functions/{self.function}"

    @property
    def service(self) -> str:
        """The Cloud Run service a 2nd-gen function deploys to: the same id
        (`ServiceConfig.service`: projects/{project}/locations/{region}/services/{service})."""
        return f"{self.parent}/services/{self.function}"


def list_prefix(parent: str) -> str:
    """What the names of the functions ListFunctions answers for `parent` begin with.

    "If you want to list functions in all locations, use "-" in place of a location"
    (`ListFunctionsRequest.parent`).
    """
    if parent.endswith("/locations/-"):
        project = parse_location(parent.removesuffix("-") + "any").project
        return f"projects/{project}/locations/"
    return f"{parse_location(parent).name}/functions/"


def parse_function(name: str, field: str = "name") -> FunctionName:
    """`projects/P/locations/L/functions/F`, or INVALID_ARGUMENT naming the field."""
    parts = name.split("/")
    if len(parts) != 6 or parts[4] != "functions" or not parts[5]:
        raise invalid(f"Invalid {field} '{name}': expected projects/*/locations/*/functions/*")
    location = parse_location("/".join(parts[:4]), field)
    return FunctionName(location.project, location.location, parts[5])


def check_function_id(function_id: str) -> None:
    if not _FUNCTION_ID.fullmatch(function_id):
        raise invalid(
            f"Invalid function_id '{function_id}': it should be 4-63 characters, lowercase "
            "letters, digits and hyphens, starting with a letter and not ending with a hyphen."
        )


def function_not_found(name: FunctionName) -> RpcError:
    """NOT_FOUND, as Cloud Functions words it."""
    return not_found(f"Function {name.function} does not exist")
