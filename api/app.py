"""The Flask application factory: one app per peer, no global state."""

from flask import Flask, g

from . import auth, consistency, instances, logs, metrics, nodes, openapi, operations, permits
from . import test_hooks, ui
from .errors import register_error_handlers
from .hot_path import HotPath
from .listing_cache import ListingCache
from .results import registry_headers
from .tokens import signing_key


def create_app(peer):
    app = Flask("registry")
    app.config["MAX_CONTENT_LENGTH"] = peer.config.max_body_bytes
    # Node URLs appear raw in paths (/registry-svc/node/https://host:1): keep their '//'.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.extensions["registry_peer"] = peer
    app.extensions["registry_listings"] = ListingCache(block_bytes=peer.config.list_cache_mb * 1024 * 1024)
    logs.install(app)
    for module in (instances, nodes, operations, permits, openapi):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(ui.blueprint)  # the web dashboard at /ui
    if test_hooks.enabled():
        app.register_blueprint(test_hooks.blueprint)
    register_error_handlers(app)
    auth.install(app, signing_key(peer.cluster_secret))
    consistency.install(app, peer.config.max_blocking_reads)
    metrics.install(app, peer)

    @app.after_request
    def add_registry_headers(response):
        response.headers.extend(registry_headers(peer, g.get("write_index", g.get("read_index"))))
        return response

    # Registering instances and listing them, the requests proxies and services send most,
    # skip Flask's per-request machinery; everything else, errors included, is Flask's.
    app.wsgi_app = HotPath(app.wsgi_app, app, peer)
    return app

