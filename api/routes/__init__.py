"""One router per resource, assembled in ``api/main.py``."""
