"""What Docker does with a Dockerfile and its context, read with Docker's own rules.

Shared by `deployer check` (which stops a deploy before a build is spent) and the
sandbox's builder (which builds as Docker would), so both apply one reading.
"""
