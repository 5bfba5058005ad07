"""ChatOps deployer for Google Cloud Run."""
