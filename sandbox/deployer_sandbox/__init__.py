"""The sandbox: a local Cloud Build, Cloud Run, Secret Manager and Slack.

The real client libraries talk to it over real gRPC (and the Slack SDK over
HTTP), so every feature is tested over the wire without a cloud account.
"""
