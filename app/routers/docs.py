"""Swagger UI (/docs) and ReDoc (/redoc), served with their assets from the service itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, on unpinned major
versions, and ReDoc's with Google Fonts: on a machine that cannot reach them
(air-gapped, on a train, a locked-down cluster) they are blank. Here the
scripts and styles are the ones the fastapi-offline package ships, pinned by
uv.lock, served under /docs/assets; the pages load nothing from anywhere else.
"""

import html
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.core.errors import NotFound
from app.routers.security import PUBLIC

SWAGGER_UI_URL = "/docs"
REDOC_URL = "/redoc"
PAGES = (SWAGGER_UI_URL, REDOC_URL)
ASSETS_URL = "/docs/assets"
_ASSETS = Path(str(files("fastapi_offline") / "static"))
_ASSET_NAMES = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"}
)

# The docs describe the API and hand out nothing: anyone may read them.
router = APIRouter(include_in_schema=False, dependencies=[PUBLIC])


def _root(request: Request) -> str:
    """The path prefix a proxy serves the service under (root_path), if any."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _openapi_url(request: Request) -> str:
    openapi_url: str = request.app.openapi_url
    return _root(request) + openapi_url


def _asset_url(request: Request, name: str) -> str:
    return f"{_root(request)}{ASSETS_URL}/{name}"


@router.get(SWAGGER_UI_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"),
        oauth2_redirect_url=None,  # no OAuth flows: the API takes bearer tokens
    )


# ReDoc always shows a "by Redocly" logo fetched from Redocly's CDN, whatever its
# options say: the page's policy keeps images (and so that request) to this origin.
_REDOC_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="img-src 'self' data:">
<title>{title}</title>
<link rel="shortcut icon" href="{favicon}">
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<noscript>ReDoc needs JavaScript; the schema itself is at {openapi_url}.</noscript>
<redoc spec-url="{openapi_url}"></redoc>
<script src="{script}"></script>
</body>
</html>
"""


@router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    return HTMLResponse(
        _REDOC_PAGE.format(
            title=html.escape(f"{request.app.title} - ReDoc"),
            favicon=_asset_url(request, "favicon.png"),
            openapi_url=_openapi_url(request),
            script=_asset_url(request, "redoc.standalone.js"),
        )
    )


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    if name not in _ASSET_NAMES:  # a fixed list: a name from the request is never a path
        raise NotFound(f"no docs asset {name!r}")
    # They change only with the package: a day in the browser's cache saves
    # fetching 2.6 MB on every visit to the docs.
    return FileResponse(_ASSETS / name, headers={"Cache-Control": "public, max-age=86400"})
