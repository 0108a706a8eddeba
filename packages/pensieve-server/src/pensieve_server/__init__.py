"""The HTTP server: the Messages API on Starlette and Hypercorn."""

from .app import create_app
from .serve import run_server, serve_engine
from .startup import open_engine

__all__ = ["create_app", "open_engine", "run_server", "serve_engine"]
