"""Adapters: the only modules that talk to Google Cloud and Slack."""
