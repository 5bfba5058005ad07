"""A function's "build": its uploaded zip unpacked into a folder, pushed as a host image.

    build(archive, folder, repository, version, entry_point)
        -> Image  REGION-docker.pkg.dev/P/gcf-artifacts/FUNCTION:version_N, whose folder is
                  the unpacked source and whose command is functions-framework:
                  python -m functions_framework --target ENTRY --source main.py
        BuildFailed("...")  the archive is not a zip, or holds no main.py

Nothing is installed: `requirements.txt` is left as it is, and the function runs with
the sandbox's own interpreter ("python" in a host image's command), which has everything
the deployer's `main.py` imports. On Google, the Python buildpack installs the
requirements and sets the functions-framework command; the image lands in the region's
`gcf-artifacts` repository ("GCF will create and use a repository named 'gcf-artifacts'
for every deployed region", `BuildConfig.docker_repository`, google/cloud/functions/v2/
functions.proto).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

from deployer_sandbox.common.images import Image

# The Python buildpack looks for the function in main.py unless GOOGLE_FUNCTION_SOURCE
# names another file (its error, as builds print it: "missing main.py and
# GOOGLE_FUNCTION_SOURCE not specified. Either create the function in main.py or specify
# GOOGLE_FUNCTION_SOURCE to point to the file that contains the function").
MAIN_FILE = "main.py"
SOURCE_ENV = "GOOGLE_FUNCTION_SOURCE"


class BuildFailed(Exception):
    """The build of a function's source failed; the message is the build's."""


def unpack(archive: bytes, folder: Path) -> None:
    """Unzip `archive` into a new `folder` (BuildFailed when it is not a zip)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as source:
            # extractall drops absolute paths and ".." parts: nothing lands outside `folder`.
            source.extractall(folder)
    except zipfile.BadZipFile as error:
        # What the build's fetch step prints for a file that is not a zip (Go's archive/zip);
        # the sandbox's wording, no Google source at hand.
        raise BuildFailed(f"Failed to unzip the function source: zip: {error}") from None


def build(
    archive: bytes,
    folder: Path,
    repository: str,
    entry_point: str,
    build_env: dict[str, str],
) -> Image:
    """Unpack the source and make the image that serves `entry_point` over HTTP."""
    unpack(archive, folder)
    source_file = build_env.get(SOURCE_ENV) or MAIN_FILE
    if not (folder / source_file).is_file():
        if SOURCE_ENV in build_env:
            raise BuildFailed(f"{SOURCE_ENV} file {source_file!r} does not exist")
        raise BuildFailed(
            "missing main.py and GOOGLE_FUNCTION_SOURCE not specified. Either create the "
            "function in main.py or specify GOOGLE_FUNCTION_SOURCE to point to the file "
            "that contains the function"
        )
    digest = "sha256:" + hashlib.sha256(archive + entry_point.encode()).hexdigest()
    return Image(
        repository=repository,
        digest=digest,
        context=folder,
        # functions-framework's own CLI (`functions_framework._cli`): --target and --source,
        # the port from PORT, which Cloud Run sets.
        cmd=(
            "python",
            "-m",
            "functions_framework",
            "--target",
            entry_point,
            "--source",
            source_file,
            "--signature-type",
            "http",
        ),
        # What the buildpack writes into the image's environment.
        env={"FUNCTION_TARGET": entry_point, "FUNCTION_SIGNATURE_TYPE": "http"},
    )
