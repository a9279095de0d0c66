"""`/docs` and `/redoc` work offline (issue 14): the pages load Swagger UI's and ReDoc's
files from this server, never from a CDN, and those files are served with their types."""

from __future__ import annotations

import re

import httpx
import pytest

ASSET_URL = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def asset_urls(page: str) -> list[str]:
    return ASSET_URL.findall(page)


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
def test_page_loads_only_local_assets(http: httpx.Client, page_path: str) -> None:
    page = http.get(page_path)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = asset_urls(page.text)
    assert urls, "the page references no scripts or styles"
    assert not re.search(r"https?://", page.text), "the page reaches out to another host"
    for url in urls:
        assert url.startswith("/docs/assets/"), url
        asset = http.get(url)
        assert asset.status_code == 200, url
        kind = EXPECTED_TYPES[url[url.rindex(".") :]]
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 0


def test_swagger_ui_bundle_is_the_real_one(http: httpx.Client) -> None:
    page = http.get("/docs").text
    (script,) = [url for url in asset_urls(page) if url.endswith("swagger-ui-bundle.js")]

    bundle = http.get(script).text

    assert "SwaggerUIBundle" in bundle
    assert "url: '/openapi.json'" in page


def test_oauth2_redirect_page_is_served(http: httpx.Client) -> None:
    response = http.get("/docs/oauth2-redirect")

    assert response.status_code == 200
    assert "oauth2" in response.text


def test_docs_pages_stay_out_of_the_schema(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]

    assert not [path for path in paths if path.startswith(("/docs", "/redoc", "/metrics"))]
