"""The uvicorn entry point (`newsrec serve`): settings come from NEWSREC_* environment variables, read here,
inside the factory, so each worker process builds its own app and nothing happens at import time."""
from __future__ import annotations

from fastapi import FastAPI

from serving.app import create_app
from serving.settings import ServeSettings


def app_factory() -> FastAPI:
    return create_app(ServeSettings())
