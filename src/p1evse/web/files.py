"""The page's files, served from the package's static directory.

They are listed once, when the server starts: a request names one of them or gets a 404,
so no path from a request ever reaches the file system. An ETag (modification time and
size) lets a browser revalidate them with a 304.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from p1evse.web.http import Response

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}
OTHER_TYPE = "application/octet-stream"


class Files:
    def __init__(self, root: Path) -> None:
        self._paths = {
            path.relative_to(root).as_posix(): path for path in root.rglob("*") if path.is_file()
        }

    def response(
        self, name: str, headers: Mapping[str, str], cache: str | None = None
    ) -> Response | None:
        """`name`'s contents, or 304 if `headers` show the browser has them; None for a
        name that is not one of the files."""
        path = self._paths.get(name)
        if path is None:
            return None
        try:
            stat = path.stat()
            tag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            extra = {"ETag": tag} if cache is None else {"ETag": tag, "Cache-Control": cache}
            if _matches(tag, headers.get("if-none-match", "")):
                return Response(status=304, headers=extra)
            body = path.read_bytes()
        except OSError:  # the package changed under the running service
            return None
        content_type = CONTENT_TYPES.get(path.suffix, OTHER_TYPE)
        return Response(body, content_type=content_type, headers=extra)


def _matches(tag: str, if_none_match: str) -> bool:
    """RFC 9110 13.1.2: `*`, or the tag among the listed ones (weak ones compare too)."""
    listed = [offer.strip().removeprefix("W/") for offer in if_none_match.split(",")]
    return "*" in listed or tag in listed
