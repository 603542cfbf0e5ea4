#!/usr/bin/env python3
"""The HTTP stack's ceiling for scripts/bench.py: bare Flask under waitress, nothing else.

Same framework, server and thread count as a registry peer, same paths, no auth, no Raft:

- `PUT /registry-svc/instance` parses the JSON body (orjson, as the registry does) and answers
  201 `{}`;
- `GET /registry-svc/instances` answers the bytes in --one-file when the query has `id`, else
  the bytes in --list-file (bench.py saves a follower's real answers there).

    python scripts/bench_bare_http.py --port 18080 [--threads 16] [--list-file F] [--one-file F]
"""

import argparse
import signal

import orjson
from flask import Flask, Response, request
from waitress import create_server


def build_app(one_body, list_body):
    app = Flask("bare")

    @app.put("/registry-svc/instance")
    def put_instance():
        body = orjson.loads(request.get_data(cache=False))
        if not isinstance(body, dict):
            return Response(b'{"error":"not an object"}', status=400, mimetype="application/json")
        return Response(b"{}", status=201, mimetype="application/json")

    @app.get("/registry-svc/instances")
    def list_instances():
        body = one_body if request.args.get("id") else list_body
        return Response(body, status=200, mimetype="application/json")

    @app.get("/healthz")
    def healthz():
        return Response(b"{}", status=200, mimetype="application/json")

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--list-file")
    parser.add_argument("--one-file")
    args = parser.parse_args()

    def read(path):
        if not path:
            return b'{"instances":[]}'
        with open(path, "rb") as source:
            return source.read()

    app = build_app(read(args.one_file), read(args.list_file))
    server = create_server(app, host=args.host, port=args.port, threads=args.threads, ident="bare")

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.run()
    finally:
        server.close()


if __name__ == "__main__":
    main()
