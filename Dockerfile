# syntax=docker/dockerfile:1
# Image of the deployer itself: the Cloud Run job `deployer-worker` runs it with
# args ["worker", DEPLOY_ID]; without args it serves the webhook app.
# (The service that gets deployed has its own image: service/Dockerfile.)
# It holds nothing of a team's: DEPLOYER_CONFIG names the config's Secret Manager
# secret, and each service's build config is read from its repository at the
# commit being deployed (git, installed below, reads it).
#
#   DOCKER_BUILDKIT=1 docker build -t REGION-docker.pkg.dev/PROJECT/deployer/deployer .

# --- builder: the locked dependencies and the project into /app/.venv ------
FROM python:3.11-slim AS builder
COPY --from=ghcr.io/astral-sh/uv:0.5 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=0
WORKDIR /app

# Dependencies first: reused until the lock changes. hatchling reads README.md; uv
# reads the workspace's other member (the sandbox) from its pyproject.toml alone and
# installs nothing of it: `--package deployer` is the product and its dependencies.
COPY pyproject.toml uv.lock README.md ./
COPY sandbox/pyproject.toml ./sandbox/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package deployer --no-install-project

COPY deployer ./deployer
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package deployer --no-editable

# --- runtime: git for reading repositories, no uv, not root ---------------------
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --shell /usr/sbin/nologin deployer
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
# The Cloud Functions entry module, for running the same app elsewhere.
COPY main.py ./
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER deployer
ENTRYPOINT ["deployer"]
CMD ["serve", "--host", "0.0.0.0"]
