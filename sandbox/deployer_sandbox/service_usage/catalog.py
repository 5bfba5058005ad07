"""The services the sandbox's Service Usage knows, and those a new project starts with.

`SERVICES` holds the APIs the deployer uses and Google's default ones; any other
name is answered as Google answers a service that does not exist or that the
caller may not see: PERMISSION_DENIED "Not found or permission denied for
service(s): NAME." (gcloud quotes it as "... does not have permission to access
projects instance [P] (or it may not exist): Not found or permission denied for
service(s): clouddebugger.googleapis.com.", google/clusterfuzz#3331).

`DEFAULT_ENABLED`: "When you create a Google Cloud project using the Google Cloud
console or Google Cloud CLI, the following APIs and services are enabled by
default" (https://cloud.google.com/service-usage/docs/enabled-service, "Services
enabled by default", read December 2026). Notably not among them: Cloud Resource
Manager, IAM, Cloud Run, Cloud Build, Secret Manager, Artifact Registry.
"""

from __future__ import annotations

# service name -> title, as Service Usage's ServiceConfig.title gives it.
SERVICES: dict[str, str] = {
    # The deployer's own.
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "cloudbuild.googleapis.com": "Cloud Build API",
    "cloudfunctions.googleapis.com": "Cloud Functions API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "cloudscheduler.googleapis.com": "Cloud Scheduler API",
    "compute.googleapis.com": "Compute Engine API",
    "eventarc.googleapis.com": "Eventarc API",
    "firestore.googleapis.com": "Cloud Firestore API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "iamcredentials.googleapis.com": "IAM Service Account Credentials API",
    "pubsub.googleapis.com": "Cloud Pub/Sub API",
    "run.googleapis.com": "Cloud Run Admin API",
    "secretmanager.googleapis.com": "Secret Manager API",
    # Enabled by default (see the module docstring).
    "analyticshub.googleapis.com": "Analytics Hub API",
    "bigquery.googleapis.com": "BigQuery API",
    "bigqueryconnection.googleapis.com": "BigQuery Connection API",
    "bigquerydatapolicy.googleapis.com": "BigQuery Data Policy API",
    "bigquerymigration.googleapis.com": "BigQuery Migration API",
    "bigqueryreservation.googleapis.com": "BigQuery Reservation API",
    "bigquerystorage.googleapis.com": "BigQuery Storage API",
    "cloudapis.googleapis.com": "Google Cloud APIs",
    "cloudtrace.googleapis.com": "Cloud Trace API",
    "dataform.googleapis.com": "Dataform API",
    "dataplex.googleapis.com": "Cloud Dataplex API",
    "datastore.googleapis.com": "Cloud Datastore API",
    "logging.googleapis.com": "Cloud Logging API",
    "monitoring.googleapis.com": "Cloud Monitoring API",
    "servicemanagement.googleapis.com": "Service Management API",
    "serviceusage.googleapis.com": "Service Usage API",
    "sql-component.googleapis.com": "Cloud SQL",
    "storage-api.googleapis.com": "Google Cloud Storage JSON API",
    "storage-component.googleapis.com": "Cloud Storage",
    "storage.googleapis.com": "Cloud Storage API",
}

DEFAULT_ENABLED = frozenset(
    {
        "analyticshub.googleapis.com",
        "bigquery.googleapis.com",
        "bigqueryconnection.googleapis.com",
        "bigquerydatapolicy.googleapis.com",
        "bigquerymigration.googleapis.com",
        "bigqueryreservation.googleapis.com",
        "bigquerystorage.googleapis.com",
        "cloudapis.googleapis.com",
        "cloudtrace.googleapis.com",
        "dataform.googleapis.com",
        "dataplex.googleapis.com",
        "datastore.googleapis.com",
        "logging.googleapis.com",
        "monitoring.googleapis.com",
        "servicemanagement.googleapis.com",
        "serviceusage.googleapis.com",
        "sql-component.googleapis.com",
        "storage-api.googleapis.com",
        "storage-component.googleapis.com",
        "storage.googleapis.com",
    }
)


def unknown_services(names: list[str]) -> str:
    """Google's words for services that do not exist (or that the caller may not see)."""
    return f"Not found or permission denied for service(s): {', '.join(names)}."
