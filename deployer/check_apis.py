"""`deployer check`: the APIs the deployer calls are enabled, in each project it calls them in.

    the deployer's own project   run (the worker job), secretmanager (its config and
                                 tokens), cloudbuild and artifactregistry (its image),
                                 cloudscheduler (the sweep), iam (its accounts),
                                 cloudresourcemanager (the project's policy), logging;
                                 firestore when DEPLOYER_STORE is Firestore
    where a service builds       cloudbuild, artifactregistry
    where an environment deploys run, secretmanager, logging; monitoring with [analysis]

One BatchGetServices a project. A project whose services cannot be read (no
`serviceusage.services.get`, or not visible) is a warning: the APIs may well be on.
`deployer setup` enables these and more (`deployer/setup/apis.py`'s `APIS`, which
`tests/test_check_project.py` keeps a superset of these).
"""

from __future__ import annotations

from collections import defaultdict

from deployer.check_results import Check, Status
from deployer.cli_ports import ProjectReader
from deployer.config import Config
from deployer.errors import RefusedError
from deployer.store.firestore_url import parse_firestore_url

# API -> what the deployer does with it, as the FAIL line says.
WHY: dict[str, str] = {
    "run.googleapis.com": "services and the worker job",
    "cloudbuild.googleapis.com": "builds",
    "secretmanager.googleapis.com": "secrets",
    "artifactregistry.googleapis.com": "images",
    "logging.googleapis.com": "a crashed container's output",
    "monitoring.googleapis.com": "canary analysis",
    "firestore.googleapis.com": "the deploy records",
    "cloudscheduler.googleapis.com": "the sweep",
    "iam.googleapis.com": "service accounts",
    "cloudresourcemanager.googleapis.com": "the project's IAM policy",
}
HOME_APIS = (
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "logging.googleapis.com",
)
BUILD_APIS = ("cloudbuild.googleapis.com", "artifactregistry.googleapis.com")
DEPLOY_APIS = ("run.googleapis.com", "secretmanager.googleapis.com", "logging.googleapis.com")
ANALYSIS_API = "monitoring.googleapis.com"
FIRESTORE_API = "firestore.googleapis.com"


def needed_apis(config: Config, home: str, store: str) -> dict[str, list[str]]:
    """Each project the deployer calls -> the APIs it calls there, sorted."""
    needed: dict[str, set[str]] = defaultdict(set)
    needed[home].update(HOME_APIS)
    if store == "firestore" or store.startswith("firestore:"):
        try:
            where = parse_firestore_url(store).project or home
        except RefusedError:  # a deploy says so; the API is still needed where it will be
            where = home
        needed[where].add(FIRESTORE_API)
    for name in config.environments:
        needed[config.service_of(name).project].update(BUILD_APIS)
        target = config.target(name)
        needed[target.project].update(DEPLOY_APIS)
        if config.environment(name).analysis is not None:
            needed[target.project].add(ANALYSIS_API)
    return {project: sorted(apis) for project, apis in sorted(needed.items())}


def check_apis(reader: ProjectReader, config: Config, home: str, store: str) -> list[Check]:
    """One check a project: every API the deployer calls there is enabled."""
    return [
        _check_project(reader, project, apis)
        for project, apis in needed_apis(config, home, store).items()
    ]


def _check_project(reader: ProjectReader, project: str, apis: list[str]) -> Check:
    subject = f"APIs in {project}"
    found = reader.enabled_apis(project, apis)
    if not found.checked:
        return Check(
            Status.WARN,
            subject,
            f"not checked ({found.note}): Service Usage would not say which APIs are "
            "enabled; `serviceusage.services.get` (roles/serviceusage.serviceUsageViewer) lets "
            "it",
        )
    missing = [api for api in apis if api not in found.enabled]
    if missing:
        named = ", ".join(f"{api} ({WHY[api]})" for api in missing)
        return Check(
            Status.FAIL,
            subject,
            f"not enabled: {named}. Enable them: `gcloud services enable "
            f"{' '.join(missing)} --project={project}` (or run `deployer setup`)",
        )
    short = ", ".join(api.removesuffix(".googleapis.com") for api in apis)
    return Check(Status.OK, subject, f"enabled: {short}")
