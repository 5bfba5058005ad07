"""Cloud Resource Manager v3 in the sandbox: projects and their IAM policies."""
