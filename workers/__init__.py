"""Execution: job specs, media files, the artifact store, Celery, Ray model hosts."""
