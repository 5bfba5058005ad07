"""IAM admin v1 in the sandbox: service accounts and their own IAM policies."""
