"""The web dashboard: GET /ui and its assets, served from this package's data by every peer.

The page and its assets hold no registry data, so they are open like the probes; the page
asks for a token and sends it on every API call it makes. Nothing comes from elsewhere: the
Content-Security-Policy lets the page load and fetch only from the peer that served it, and
forbids inline script, so a record that carries markup cannot run anything even if it were
ever inserted as HTML (the page inserts record values only as text).
"""

import functools
from importlib import resources

from flask import Blueprint, Response, request

from .errors import ApiError

blueprint = Blueprint("ui", __name__)

ASSET_PACKAGE = "api"
ASSET_FOLDER = "ui_assets"
# Only these names are served: a request cannot reach any other file.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate each time (a cheap 304 by ETag), so an upgraded peer serves its new page at once.
    "Cache-Control": "no-cache",
}


@functools.lru_cache(maxsize=None)
def asset_bytes(name):
    return resources.files(ASSET_PACKAGE).joinpath(ASSET_FOLDER, name).read_bytes()


def _serve(name):
    if name not in ASSETS:
        raise ApiError(404, f"no dashboard asset named '{name}'; the dashboard is at /ui")
    response = Response(asset_bytes(name), mimetype=None, content_type=ASSETS[name])
    response.headers.update(SECURITY_HEADERS)
    response.add_etag()
    return response.make_conditional(request)


@blueprint.get("/ui")
@blueprint.get("/ui/")
def page():
    return _serve("index.html")


@blueprint.get("/ui/<path:name>")
def asset(name):
    return _serve(name)
