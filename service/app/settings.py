"""Configuration read once from the environment at start-up."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Validated, frozen configuration; a missing required variable stops start-up.

    Only the process environment is read (no .env file): on Cloud Run the
    revision's environment is the single source of truth.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        # An empty value is as wrong as a missing one ("MONGODB_URL=" must not
        # start a service that cannot reach its database).
        env_ignore_empty=True,
        # pydantic would otherwise quote every collected variable in the
        # error, SECRET_KEY included, into the container log.
        hide_input_in_errors=True,
        extra="ignore",
    )

    # Required: the variables lost in the hand-written deploy.
    mongodb_url: str = Field(repr=False)  # may carry database credentials
    secret_key: SecretStr

    # Server.
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)

    # Identity reported by /health. APP_COMMIT is baked into the image by the
    # Dockerfile; K_SERVICE and K_REVISION are set by Cloud Run.
    app_commit: str = "unknown"
    k_service: str = "content-api"
    k_revision: str | None = None
