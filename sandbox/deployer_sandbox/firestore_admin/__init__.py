"""Firestore Admin v1 in the sandbox: databases and composite indexes, recorded."""
