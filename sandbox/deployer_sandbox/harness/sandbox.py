"""Assembles the sandbox: one gRPC server for every Google API, HTTP servers for Slack, git
and the metadata server.

The gRPC server is plaintext and takes any credentials. It serves
`google.longrunning.Operations`, Secret Manager v1, Cloud Build v1 (builds,
which push to the sandbox's image registry, and triggers), Cloud Build v2's
RepositoryManager, Cloud Run v2 (services, revisions, jobs, executions; revisions
run as local processes, each in a network namespace of its own, behind the router), Cloud Logging v2's ListLogEntries
(over the revisions' and the builds' logs), Cloud Monitoring v3's ListTimeSeries (Cloud
Run's request_count and request_latencies, over the router's request log) and Artifact
Registry v1's Docker images (over the image store); Cloud Scheduler v1 (jobs recorded,
run by RunJob or by `run_due` on demand) and Firestore Admin v1 (databases and composite
indexes, recorded); Cloud Functions v2 (a function is a Cloud Run service whose revision is a
functions-framework process; sources are PUT to upload URLs on a port of their own). One
HTTP server is the Slack Web API
sink and the control endpoint, and serves GitHub's REST API for deployments under
`/github`; a git smart-HTTP server serves the v2
repositories' `remote_uri`s as private GitHub repositories (read tokens come from
FetchReadToken); Cloud Storage's JSON API on a port of its own (`storage.server`,
STORAGE_EMULATOR_HOST); and the metadata server (GCE_METADATA_HOST/_IP) hands out
credentials and the ID tokens, signed by the sandbox's key, that open private
services.

Every process the sandbox runs (revisions, job tasks, functions) finds the sandbox the
way production finds googleapis.com by DNS: its platform environment
(`harness.platform_env`) names the gRPC address (DEPLOYER_GCP_EMULATOR_HOST), the Slack
sink (SLACK_API_URL), GitHub's API (DEPLOYER_GITHUB_API_URL) and, when this process has
it, FIRESTORE_EMULATOR_HOST, beside the metadata server's address.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc

from deployer_sandbox.artifact_registry.api import ArtifactRegistry
from deployer_sandbox.cloud_build.api import CloudBuild
from deployer_sandbox.cloud_build.git_server import GitServer
from deployer_sandbox.cloud_build.repositories import Repositories
from deployer_sandbox.cloud_logging.api import CloudLogging
from deployer_sandbox.cloud_run.api import CloudRun
from deployer_sandbox.cloud_run.loopback_traffic import LoopbackTraffic
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import ImageStore
from deployer_sandbox.common.netns import ContainerNetwork
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.firestore_admin.api import FirestoreAdmin
from deployer_sandbox.functions.api import CloudFunctions
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.harness.platform_env import PlatformEnv
from deployer_sandbox.harness.project_apis import ProjectApis
from deployer_sandbox.metadata.id_tokens import IdTokenKey
from deployer_sandbox.metadata.server import MetadataServer
from deployer_sandbox.monitoring.api import CloudMonitoring
from deployer_sandbox.scheduler.api import CloudScheduler
from deployer_sandbox.secret_manager.api import SecretManager
from deployer_sandbox.slack.rate_limits import SlackRateLimits
from deployer_sandbox.storage.server import CloudStorage

log = logging.getLogger(__name__)


class Sandbox:
    """The local cloud, in this process. `start()` it, `stop()` it (stops every child).

    `slack_rate_scale` speeds up the Slack sink's rate limits (1.0: Slack's own;
    20: twenty times as many calls; 0 or less: none), see `slack.rate_limits`.
    """

    def __init__(
        self,
        workdir: Path,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        slack_rate_scale: float = 1.0,
        container_namespaces: bool | None = None,
    ) -> None:
        """`container_namespaces`: False runs every revision and job task in the host's
        network, on a remapped port; None gives each a network namespace where that works
        (see `common.netns`)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.host = host
        self.faults = Faults()
        self.operations = Operations()
        self.images = ImageStore()
        # Artifact Registry's API over the images builds push and revisions run.
        self.registry = ArtifactRegistry(self.images, self.operations)
        self.secrets = SecretManager()
        # GitHub, as far as the sandbox goes: the private repositories Cloud Build's
        # connections (RepositoryManager) serve, at `git_server.url`.
        self.git_server = GitServer(host=host)
        self.repositories = Repositories(self.operations, self.git_server)
        # Cloud Storage's JSON API (STORAGE_EMULATOR_HOST): buckets, objects, and the
        # archives `storage_source` builds unpack.
        self.storage = CloudStorage(host=host)
        self.builds = CloudBuild(
            self.operations,
            self.images,
            self.faults,
            workdir / "builds",
            repositories=self.repositories,
            read_object=self.storage.objects.read,
        )
        # Google's signing key, as far as the sandbox goes: the metadata server signs ID
        # tokens with it, Cloud Run's door (the router) checks them.
        self.id_tokens = IdTokenKey()
        self.metadata = MetadataServer(self.id_tokens, host=host)
        # Revisions and job tasks run in network namespaces of their own, where the
        # sandbox's endpoints are relayed in (its ports are added below, once bound).
        self.network = ContainerNetwork(namespaces=container_namespaces)
        # What every revision, job task and function finds in its environment: the
        # metadata server now, the sandbox's addresses once bound (`platform_env`).
        self.platform_env = PlatformEnv(self.metadata.environment())
        self.run = CloudRun(
            self.operations,
            self.images,
            self.secrets,
            self.faults,
            workdir / "run",
            id_tokens=self.id_tokens,
            platform_env=self.platform_env,
            network=self.network,
        )
        self.logging = CloudLogging(
            self.run.processes, self.run.state, self.builds, jobs=self.run.jobs
        )
        # Cloud Monitoring's ListTimeSeries, over the requests the Cloud Run router answered.
        self.monitoring = CloudMonitoring(self.run.request_log, self.faults)
        # Cloud Scheduler: jobs recorded, run on demand; a `jobs/J:run` target runs J here.
        self.scheduler = CloudScheduler(self.run.jobs.run, self.id_tokens)
        self.firestore_admin = FirestoreAdmin(self.operations)
        # Cloud Functions v2: a function is a Cloud Run service here, its source uploaded
        # to `functions.uploads.url` and run as a functions-framework process.
        self.functions = CloudFunctions(
            self.operations,
            self.run,
            self.images,
            workdir / "functions",
            host=host,
            # A build account must exist in IAM (made below: looked up when a function deploys).
            account_exists=lambda email: self.project_apis.iam.exists(email),
        )
        # Service Usage, IAM service accounts and the project IAM policy (`deployer setup`).
        self.project_apis = ProjectApis(self.operations)
        self.http = SandboxHttp(
            self.faults,
            host=host,
            rate_limits=SlackRateLimits(slack_rate_scale),
            # POST /_sandbox/traffic: loopback requests to a service's URL, as users would send.
            traffic=LoopbackTraffic(self.run.router, self.id_tokens),
        )
        # Builds and reconciles run on their own threads; handlers only record and answer.
        self._grpc = grpc.server(
            # Enough threads that callers blocked in WaitOperation (one per deploy that
            # waits on Cloud Run) never starve the other calls.
            futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="rpc")
        )
        self._grpc.add_generic_rpc_handlers(
            [
                self.operations.handler(),
                self.secrets.handler(),
                self.builds.handler(),
                self.repositories.handler(),
                *self.run.handlers(),
                self.logging.handler(),
                self.monitoring.handler(),
                self.scheduler.handler(),
                self.firestore_admin.handler(),
                self.functions.handler(),
                self.registry.handler(),
                *self.project_apis.handlers(),
            ]
        )
        self._grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        self.platform_env.bind(
            self.grpc_address, self.slack_api_url, self.github_api_url, self.storage.url
        )
        for url in (
            self.grpc_address,
            self.http.url,
            self.metadata.address,
            self.git_server.url,
            self.storage.url,
        ):
            self.network.egress.add(int(url.rsplit(":", 1)[1]))
        self._stopped = False

    @property
    def grpc_address(self) -> str:
        """host:port for `DEPLOYER_GCP_EMULATOR_HOST`."""
        return f"{self.host}:{self._grpc_port}"

    @property
    def storage_url(self) -> str:
        """Cloud Storage's JSON API, for `STORAGE_EMULATOR_HOST` (scheme included)."""
        return self.storage.url

    @property
    def slack_api_url(self) -> str:
        """Base URL of the Slack Web API sink, for `SLACK_API_URL`."""
        return f"{self.http.url}/api/"

    @property
    def github_api_url(self) -> str:
        """Base URL of GitHub's REST API (deployments) in the sandbox, for
        `DEPLOYER_GITHUB_API_URL`; its state (tokens, repositories) is `http.github`."""
        return f"{self.http.url}/github"

    @property
    def metadata_address(self) -> str:
        """host:port of the metadata server, for both `GCE_METADATA_HOST` and `GCE_METADATA_IP`."""
        return self.metadata.address

    @property
    def network_isolation(self) -> str | None:
        """None when each revision and job task has a network namespace of its own, else
        why they share the host's network (PORT is then a free host port)."""
        return self.network.unavailable

    def start(self) -> Sandbox:
        if self.network.unavailable is not None:
            log.warning(
                "Containers share the host's network (%s): each revision listens on a free "
                "port given as PORT, not on its container port.",
                self.network.unavailable,
            )
        self._grpc.start()
        self.http.start()
        self.metadata.start()
        self.git_server.start()
        self.storage.start()
        self.functions.start()
        return self

    def stop(self) -> None:
        """Stop serving and end every process the sandbox started. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._grpc.stop(grace=0.5)
        for component in (
            self.functions,
            self.run,
            self.builds,
            self.http,
            self.metadata,
            self.git_server,
            self.storage,
        ):
            try:
                component.close()
            except Exception:
                log.exception("closing %s failed", type(component).__name__)
