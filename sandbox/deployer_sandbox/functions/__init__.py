"""Cloud Functions v2 in the sandbox: 2nd-gen functions run as Cloud Run services."""
