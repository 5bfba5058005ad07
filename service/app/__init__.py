"""Content Management API: the sample service the deployer ships to Cloud Run."""
