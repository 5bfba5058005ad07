"""The chat front: HTTP routes that Slack and GitHub call."""
