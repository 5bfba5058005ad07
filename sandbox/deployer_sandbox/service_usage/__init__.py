"""Service Usage v1 in the sandbox: which APIs each project has enabled."""
