"""HTTP: the Letta REST API. Routers per resource parse and check requests, call the
service layer, and serialise its answers; `_errors` maps Kelpie errors to statuses in one
table. The only layer that imports FastAPI.
"""

from kelpie.api._app import create_app

__all__ = ["create_app"]
