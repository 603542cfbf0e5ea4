"""The dashboard's files as one peer serves them: open, with a strict CSP, nothing else reachable."""

import re

import pytest

from api import ui

ASSET_DIR = ui.resources.files("api").joinpath("ui_assets")


@pytest.mark.parametrize("path, kind", [
    ("/ui", "text/html"), ("/ui/", "text/html"), ("/ui/index.html", "text/html"),
    ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"), ("/ui/favicon.svg", "image/svg+xml"),
])
def test_the_dashboard_is_served_without_a_token_and_with_a_strict_csp(client_for, path, kind):
    answer = client_for().get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith(kind)
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    etag = answer.headers["ETag"]
    assert client_for().get(path, headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/../app.py", "/ui/%2e%2e/auth.py", "/ui/ui_assets/app.js"])
def test_nothing_but_the_named_assets_is_served(client_for, path):
    answer = client_for().get(path)
    assert answer.status_code == 404
    assert "error" in answer.get_json()


def test_the_api_still_needs_a_token(client_for):
    assert client_for().get("/registry-svc/instances").status_code == 401


def test_the_assets_load_nothing_from_elsewhere_and_never_insert_html():
    for name in ui.ASSETS:
        text = ASSET_DIR.joinpath(name).read_text(encoding="utf-8")
        # Quoted absolute URLs, CSS url() and @import: only the SVG namespace name (which loads nothing).
        urls = set(re.findall(r"""["'(]\s*((?:https?:)?//[^"')\s]*)""", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls and "@import" not in text, f"{name} names outside URLs {urls}"
    script = ASSET_DIR.joinpath("app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, f"app.js uses {sink}"
    page = ASSET_DIR.joinpath("index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "index.html has an inline script"
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", page), "index.html has an inline event handler"
