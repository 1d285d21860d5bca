"""The REST API (FastAPI): thin routers over :mod:`registry.services`."""
