"""The deployer's own image (the root `Dockerfile`), built with Cloud Build.

Not built by setup yet: `--image` names an image built beforehand
(`gcloud builds submit --tag REGION-docker.pkg.dev/P/REPO/deployer .`), and the worker
job runs it. When built here, this module returns the image's digest reference for
`Setup.image`.
"""

from __future__ import annotations

from deployer.setup.context import Setup


def deployer_image(setup: Setup) -> str | None:
    """The image the worker job runs: `--image`, for now."""
    return setup.image
