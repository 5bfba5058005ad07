"""The APIs that shape a project rather than run in it: Service Usage (enabled APIs),
IAM service accounts and Resource Manager's project policy, over one registry of
projects (`resource_manager.projects`).

They are wired together because Google's are: a Google-managed service account
exists once its API is enabled, and a policy may only name accounts that exist.
"""

from __future__ import annotations

import grpc

from deployer_sandbox.common.operations import Operations
from deployer_sandbox.iam.api import IamAdmin
from deployer_sandbox.resource_manager.api import ResourceManager
from deployer_sandbox.resource_manager.projects import Projects
from deployer_sandbox.service_usage.api import ServiceUsage


class ProjectApis:
    """Service Usage, IAM admin and Resource Manager, sharing one registry of projects."""

    def __init__(self, operations: Operations) -> None:
        self.projects = Projects()
        self.service_usage = ServiceUsage(self.projects, operations)
        self.iam = IamAdmin(self.projects, self.service_usage)
        self.resource_manager = ResourceManager(self.projects, self.iam)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The gRPC handlers of the three APIs."""
        return [
            self.service_usage.handler(),
            self.iam.handler(),
            self.resource_manager.handler(),
        ]
