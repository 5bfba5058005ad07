"""HTTP routes of the Content Management API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from app.settings import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load settings before serving, so bad configuration fails start-up, not a request."""
    app.state.settings = Settings()
    yield


app = FastAPI(title="Content Management API", lifespan=lifespan)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@app.get("/")
def root() -> dict[str, str]:
    """Say what this service is."""
    return {"message": "Content Management API", "status": "running"}


@app.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Report liveness and exactly which build and revision answered."""
    settings = _settings(request)
    return {
        "status": "healthy",
        "service": settings.k_service,
        "version": {"commit": settings.app_commit, "revision": settings.k_revision},
    }
