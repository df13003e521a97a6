"""``mediaforge worker --queues audio,image``: a Celery worker (threads pool) of a cluster."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import redis
import typer

from workers.celery_app import QUEUE_FAMILIES, app, configure_celery
from workers.settings import get_settings
from workers.shared_dir import NotShared, SharedDir


def worker_command(
    queues: Annotated[str, typer.Option(help=f"comma-separated queue families of {', '.join(QUEUE_FAMILIES)}")]
    = ",".join(QUEUE_FAMILIES),
    concurrency: Annotated[int | None, typer.Option(help="threads (default MEDIAFORGE_WORKER_CONCURRENCY)")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Consume jobs of the given families; jobs run in Ray model hosts (RAY_ADDRESS, or a local Ray)."""
    settings = get_settings()
    if not settings.redis_url:
        typer.echo("error: a worker joins a cluster: set MEDIAFORGE_REDIS_URL (mediaforge serve embeds one)",
                   err=True)
        raise typer.Exit(code=2)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUE_FAMILIES))
    if unknown or not names:
        typer.echo(f"error: unknown queue families {unknown or names}; known: {list(QUEUE_FAMILIES)}", err=True)
        raise typer.Exit(code=2)
    try:
        SharedDir(redis.Redis.from_url(settings.redis_url, decode_responses=True), settings.key_prefix,
                  settings.artifacts_root).check_and_join(f"worker {','.join(names)}")
    except NotShared as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    configure_celery(settings.redis_url, settings)
    # Threads pool: Ray is initialised lazily by the first job, in this process, never before a fork.
    app.Worker(hostname=f"{'+'.join(names)}-{os.getpid()}@{socket.gethostname()}", queues=names,
               pool_cls="threads", concurrency=concurrency or settings.worker_concurrency, loglevel=loglevel,
               redirect_stdouts=False, task_events=True).start()
