"""Cloud Run resource names: parsing, the naming rules and the messages the API gives for them.

    projects/P/locations/L                                  a parent
    projects/P/locations/L/services/S                       a service
    projects/P/locations/L/services/S/revisions/R           a revision (R starts with "S-")

Generated revision names follow Cloud Run: `{service}-{generation:05d}-{3 characters}`,
e.g. `monolith-00002-dj9`.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from urllib.parse import quote

from deployer_sandbox.common.rpc import RpcError, invalid, not_found

# Service ids: "must begin with letter, and cannot end with hyphen; must contain
# fewer than 50 characters" (CreateServiceRequest.service_id).
SERVICE_ID_MAX = 49
_SERVICE_ID = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# Revision names are DNS labels (RFC 1035), like Knative's.
REVISION_NAME_MAX = 63
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# A tag and its service form the tag URL's DNS label; Cloud Run caps the two together.
TAG_AND_SERVICE_MAX = 46
_TAG = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_SEGMENT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Location:
    project: str
    location: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


@dataclass(frozen=True)
class ServiceName:
    project: str
    location: str
    service: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/services/{self.service}"

    def revision(self, revision_id: str) -> str:
        """Full name of one of this service's revisions."""
        return f"{self.name}/revisions/{revision_id}"


def parse_location(parent: str, field: str = "parent") -> Location:
    """`projects/P/locations/L`, or INVALID_ARGUMENT naming `field`."""
    parts = parent.split("/")
    if (
        len(parts) != 4
        or parts[0] != "projects"
        or parts[2] != "locations"
        or not _SEGMENT.fullmatch(parts[1])
        or not _SEGMENT.fullmatch(parts[3])
    ):
        raise invalid(
            f"Invalid {field} '{parent}': expected the form projects/{{project}}/locations/{{location}}."
        )
    return Location(parts[1], parts[3])


def parse_service(name: str, field: str = "name") -> ServiceName:
    """`projects/P/locations/L/services/S`, or INVALID_ARGUMENT naming `field`."""
    head, sep, service = name.rpartition("/services/")
    if not sep or not service or "/" in service:
        raise invalid(
            f"Invalid {field} '{name}': expected the form "
            "projects/{project}/locations/{location}/services/{service}."
        )
    location = parse_location(head, field)
    return ServiceName(location.project, location.location, service)


def parse_revision(name: str, field: str = "name") -> tuple[ServiceName, str]:
    """(service, revision id) of `projects/P/locations/L/services/S/revisions/R`."""
    head, sep, revision = name.rpartition("/revisions/")
    if not sep or not revision or "/" in revision:
        raise invalid(
            f"Invalid {field} '{name}': expected the form "
            "projects/{project}/locations/{location}/services/{service}/revisions/{revision}."
        )
    return parse_service(head, field), revision


def check_service_id(service_id: str) -> None:
    """INVALID_ARGUMENT unless `service_id` is a valid Cloud Run service id."""
    if not service_id:
        raise invalid("Violation in CreateServiceRequest.service_id: should be set")
    if len(service_id) > SERVICE_ID_MAX or not _SERVICE_ID.fullmatch(service_id):
        raise invalid(
            f"Invalid value '{service_id}' for service_id: Service name must use only lowercase "
            "alphanumeric characters and dashes. Must begin with a letter and cannot end with a "
            f"dash. Maximum length is {SERVICE_ID_MAX} characters."
        )


def check_revision_id(service_id: str, revision_id: str) -> None:
    """INVALID_ARGUMENT unless a chosen revision name suits the service (Knative's rule)."""
    prefix = f"{service_id}-"
    if not revision_id.startswith(prefix) or revision_id == prefix:
        raise invalid(
            f'service.template.revision: "{revision_id}" must have prefix "{prefix}" '
            "(revision names start with the service name and a hyphen)."
        )
    if len(revision_id) > REVISION_NAME_MAX or not _DNS_LABEL.fullmatch(revision_id):
        raise invalid(
            f"service.template.revision: Invalid revision name '{revision_id}': must use only "
            "lowercase alphanumeric characters and dashes, end with an alphanumeric character "
            f"and be at most {REVISION_NAME_MAX} characters long."
        )


def check_tag(service_id: str, tag: str, index: int) -> None:
    """INVALID_ARGUMENT unless a traffic tag is a valid URL label for this service."""
    if not _TAG.fullmatch(tag):
        raise invalid(
            f"service.traffic[{index}].tag: Invalid tag '{tag}': tags must use only lowercase "
            "alphanumeric characters and dashes, begin with a letter and not end with a dash."
        )
    if len(tag) + len(service_id) > TAG_AND_SERVICE_MAX:
        raise invalid(
            f"service.traffic[{index}].tag: traffic tag '{tag}' and service name '{service_id}' "
            "together are too long. Combined traffic tag and service name cannot exceed "
            f"{TAG_AND_SERVICE_MAX} characters."
        )


def generated_revision_id(service_id: str, generation: int) -> str:
    """A fresh revision name as Cloud Run makes one: `{service}-{generation:05d}-{xyz}`."""
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(3))
    return f"{service_id}-{generation:05d}-{suffix}"


# How Cloud Run words a page token it did not issue (`{token}`: the token), for every list.
INVALID_PAGE_TOKEN = "Invalid page_token '{token}'."


def service_not_found(service: ServiceName) -> RpcError:
    """NOT_FOUND worded as Cloud Run words it."""
    return not_found(
        f"Resource '{service.service}' of kind 'SERVICE' in region '{service.location}' "
        f"in project '{service.project}' does not exist."
    )


def revision_not_found(service: ServiceName, revision_id: str) -> RpcError:
    """NOT_FOUND for a revision, worded as Cloud Run words it."""
    return not_found(
        f"Resource '{revision_id}' of kind 'REVISION' in region '{service.location}' "
        f"in project '{service.project}' does not exist."
    )


def log_uri(service: ServiceName, revision_id: str) -> str:
    """The Cloud Logging viewer URL Cloud Run gives a revision (its `log_uri`, its failures)."""
    query = (
        'resource.type="cloud_run_revision"\n'
        f'resource.labels.service_name="{service.service}"\n'
        f'resource.labels.revision_name="{revision_id}"'
    )
    return (
        f"https://console.cloud.google.com/logs/viewer?project={service.project}"
        f"&resource=cloud_run_revision/service_name/{service.service}"
        f"/revision_name/{revision_id}&advancedFilter={quote(query, safe='')}"
    )
