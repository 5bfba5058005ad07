"""GitHub's REST API for deployments in the sandbox: `state` (what GitHub remembers) and `api` (the wire), served under `/github` on the Slack sink's HTTP host."""
