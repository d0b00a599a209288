"""The dashboard's own CSS and JS, served from the package: it works offline, with no CDN."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

STATIC = Path(__file__).resolve().parent / "static"
# The dashboard's own files and their types: fixed here, not guessed from the host's
# mime.types (which says application/javascript on some systems, text/javascript on others).
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, media type), read once when the app is built."""
    return {
        path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.suffix in STATIC_TYPES
    }


def static_handler() -> Handler:
    """GET /static/{filename}: one of the files above (ETag, 304), else 404."""
    files = static_files()
    tags = {
        name: '"' + hashlib.sha256(body).hexdigest()[:16] + '"' for name, (body, _) in files.items()
    }

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["filename"]
        if name not in files:
            return web.Response(status=404, text="no such file\n")
        body, media = files[name]
        headers = {hdrs.ETAG: tags[name], hdrs.CACHE_CONTROL: "no-cache"}
        if request.headers.get(hdrs.IF_NONE_MATCH) == tags[name]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=media, charset="utf-8", headers=headers)

    return handle
