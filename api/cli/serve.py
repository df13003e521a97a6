"""``mediaforge serve``: the REST API; with no MEDIAFORGE_REDIS_URL, the whole embedded service in one process."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn


def serve_command(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the REST API (OpenAPI at /docs). Embedded Redis + Ray + worker unless MEDIAFORGE_REDIS_URL is set."""
    uvicorn.run("api.main:app", host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
