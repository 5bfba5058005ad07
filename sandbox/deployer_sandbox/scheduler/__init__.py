"""Cloud Scheduler v1 in the sandbox."""
