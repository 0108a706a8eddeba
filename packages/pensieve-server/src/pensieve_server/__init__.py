"""The HTTP server: the Messages API on Starlette and Hypercorn."""

from .app import create_app
from .models import ServedModels
from .serve import run_server, serve_models
from .startup import open_engine, open_models

__all__ = ["ServedModels", "create_app", "open_engine", "open_models", "run_server", "serve_models"]
