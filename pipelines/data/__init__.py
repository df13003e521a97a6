"""Procedural datasets built here (no downloads)."""
