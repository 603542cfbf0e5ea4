"""JSON in and out of requests, with orjson for speed and strictness (no NaN, no >64-bit ints)."""

import bisect
import io
import itertools

import orjson
from flask import Response, request

from registry.errors import ValidationError


def read_json(*, required):
    """The request's JSON body; None when optional and empty. Bad JSON is a 400."""
    # Flask enforces MAX_CONTENT_LENGTH here (413), with or without a Content-Length header.
    raw = request.get_data(cache=False)
    if not raw.strip():
        if required:
            raise ValidationError("the request body is empty; send a JSON object")
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ValidationError(f"the request body is not valid JSON: {error}") from None


def respond(payload, status=200, headers=None):
    return respond_encoded(b"" if payload is None else orjson.dumps(payload), status, headers)


# Bodies this large go out through the server's file wrapper: waitress then sends straight from
# the bytes, where a body returned whole is first copied into its output buffer, and past 1 MB
# into a temporary file (a 46 MB list: 56 ms to send that way, 20 ms through the wrapper).
STREAM_FROM_BYTES = 1024 * 1024
STREAM_BLOCK_BYTES = 1024 * 1024


def respond_encoded(body, status=200, headers=None):
    """An answer whose JSON body is already encoded: bytes, or an EncodedList's parts."""
    if len(body) < STREAM_FROM_BYTES and type(body) is bytes:
        return Response(body, status=status, headers=headers, mimetype="application/json")
    response = Response(wsgi_body(request.environ, body), status=status, headers=headers,
                        mimetype="application/json", direct_passthrough=True)
    response.content_length = len(body)
    return response


def wsgi_body(environ, body):
    """The WSGI iterable of a response body: large ones through the server's file wrapper."""
    parts = [body] if type(body) is bytes else body.parts
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None or len(body) < STREAM_FROM_BYTES:
        return parts
    return wrapper(_PartsFile(parts), STREAM_BLOCK_BYTES)


class _PartsFile:
    """A read-only file over bytes parts whose reads are views, not copies: waitress reads each
    block it sends twice (once to try, once to skip what went out), and copies of megabytes each
    time cost the heap more than the body itself. A read ends at the end of a part."""

    def __init__(self, parts):
        self._views = [memoryview(part) for part in parts if part]
        self._starts = list(itertools.accumulate((len(view) for view in self._views), initial=0))
        self._size = self._starts.pop()
        self._position = 0

    def read(self, size=-1):
        if self._position >= self._size:
            return b""
        at = bisect.bisect_right(self._starts, self._position) - 1
        view, offset = self._views[at], self._position - self._starts[at]
        end = len(view) if size is None or size < 0 else min(len(view), offset + size)
        self._position += end - offset
        return view[offset:end]

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position
