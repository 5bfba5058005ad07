"""`python -m app`: validate configuration, then serve on $HOST:$PORT.

This is the container's command. Settings are checked before uvicorn starts so
that a missing variable ends the process at once, with pydantic's own message
on stderr, which Cloud Run shows as the revision's start-up failure.
"""

import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from app.settings import Settings

# uvicorn's own messages go to stdout (Cloud Run collects both streams; stderr
# is kept for the start-up failure). Access logging is off: Cloud Run already
# records every request.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}


def main() -> int:
    """Run the server; return the process exit status."""
    try:
        settings = Settings()
    except ValidationError as error:
        # Not a traceback: the validation report alone names each missing or
        # invalid variable (values are hidden, see Settings.model_config).
        print(f"content-api: invalid configuration, not starting.\n{error}", file=sys.stderr)
        return 1
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=LOG_CONFIG,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
