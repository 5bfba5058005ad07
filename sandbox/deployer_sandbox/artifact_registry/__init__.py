"""Artifact Registry v1 in the sandbox: Docker images, their tags and versions, over the image store."""
