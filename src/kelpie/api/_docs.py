"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc`, whole from this server:
their scripts, styles and icon are the files the fastapi-offline package ships, served under
`DOCS_ASSETS_PATH`, where FastAPI's own pages would load them from a CDN. So the pages work
on a machine without internet access. This is FastAPI's "Self-hosting JavaScript and CSS
for docs", with the files from a package instead of a copy kept in this repository."""

from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH: Final = "/docs"
REDOC_PATH: Final = "/redoc"
DOCS_ASSETS_PATH: Final = "/docs/assets"
# (package, directory inside it): Swagger UI's bundle and CSS, ReDoc's bundle, a favicon.
DOCS_ASSETS_PACKAGE: Final = ("fastapi_offline", "static")
SWAGGER_JS: Final = "swagger-ui-bundle.js"
SWAGGER_CSS: Final = "swagger-ui.css"
REDOC_JS: Final = "redoc.standalone.js"
FAVICON: Final = "favicon.png"


def install_docs(app: FastAPI) -> None:
    """Serves the pages FastAPI would (make the app with `docs_url=None, redoc_url=None`)."""
    assert app.docs_url is None, "FastAPI's own /docs loads Swagger UI from a CDN"
    assert app.redoc_url is None, "FastAPI's own /redoc loads ReDoc from a CDN"
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    assert openapi_url is not None, "documentation pages need the OpenAPI schema"
    assert oauth2_redirect_url is not None, "Swagger UI's OAuth2 redirect page has a URL"
    app.mount(DOCS_ASSETS_PATH, StaticFiles(packages=[DOCS_ASSETS_PACKAGE]), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        assets = f"{root}{DOCS_ASSETS_PATH}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}",
            swagger_js_url=f"{assets}/{SWAGGER_JS}",
            swagger_css_url=f"{assets}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{assets}/{FAVICON}",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        assets = f"{root}{DOCS_ASSETS_PATH}"
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/{REDOC_JS}",
            redoc_favicon_url=f"{assets}/{FAVICON}",
            with_google_fonts=False,
        )

    app.add_api_route(DOCS_PATH, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        oauth2_redirect_url, swagger_ui_redirect, methods=["GET"], include_in_schema=False
    )
    app.add_api_route(REDOC_PATH, redoc, methods=["GET"], include_in_schema=False)
