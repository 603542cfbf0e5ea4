"""The Flask application factory: one app per peer, no global state."""

from flask import Flask, g

from . import auth, consistency, instances, logs, metrics, nodes, openapi, operations, permits
from . import ui
from .errors import register_error_handlers
from .listing_cache import ListingCache
from .tokens import signing_key


def create_app(peer):
    app = Flask("registry")
    app.config["MAX_CONTENT_LENGTH"] = peer.config.max_body_bytes
    # Node URLs appear raw in paths (/registry-svc/node/https://host:1): keep their '//'.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.extensions["registry_peer"] = peer
    app.extensions["registry_listings"] = ListingCache()
    logs.install(app)
    for module in (instances, nodes, operations, permits, openapi):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(ui.blueprint)  # the web dashboard at /ui
    register_error_handlers(app)
    auth.install(app, signing_key(peer.cluster_secret))
    consistency.install(app, peer.config.max_blocking_reads)
    metrics.install(app, peer)

    @app.after_request
    def registry_headers(response):
        replica = peer.replica
        index = g.get("write_index", g.get("read_index"))
        response.headers["X-Registry-Index"] = str(index if index is not None else replica.state_index)
        response.headers["X-Registry-Known-Leader"] = "true" if replica.leader_address is not None else "false"
        response.headers["X-Registry-Last-Contact"] = str(peer.last_contact_ms())
        return response

    return app
