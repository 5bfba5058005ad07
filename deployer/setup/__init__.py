"""`deployer setup --project P --region R`: a team's project, from zero to `/deploy prod`.

Each step reads what exists, then creates or corrects only the difference, never
duplicating and never removing what someone else made; one line per step says
`planned` (a dry run), `changed` or `unchanged`, and a summary ends the run.

    step               API                        what it makes
    apis               Service Usage              the APIs the deployer calls, enabled
    accounts           IAM                        the deployer's, the front's, the scheduler's
                                                  accounts and the runtime accounts the config names
    firestore          Firestore Admin            the (default) database (native mode), its index
    secrets            Secret Manager             the Slack and GitHub secrets and deployer-config
    project grants     Resource Manager           project roles (`setup/roles.py`)
    account grants     IAM (the account's own)    serviceAccountUser on each runtime account
    secret grants      Secret Manager IAM         secretAccessor on each secret, per reader
    service grants     Cloud Run IAM              roles on services that exist (else: after the
                                                  first deploy)
    worker job         Cloud Run jobs             `deployer-worker`, retried, long enough
    worker job grants  Cloud Run job IAM          who may start it with overrides
    sweep              Cloud Scheduler            `deployer-sweep`, every minute
    front              Cloud Functions v2         not built yet (`setup/front.py`)
    image              Cloud Build, Storage,      the deployer's image from this checkout, unless
                       Artifact Registry          `--image` names one (`setup/image.py`)

Secrets are secrets stores' business only: values are read from standard input or
`--secrets-file`, compared by checksum and sent, never printed.
"""
