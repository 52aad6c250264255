"""Files handed to and from browsers through waved, kept from piling up in its data directory.

waved keeps every upload and every file the app uploads for a download until it is deleted.
The launcher empties the directory on start-up; while the app runs:
- a download replaces the previous one of the same experiment and kind (only the latest stays);
- an upload is deleted from waved as soon as the app has its own copy.
"""

from __future__ import annotations

from h2o_wave import Q

# (experiment id, kind) -> waved URL of the file last served for it, in this app process.
_served: dict[tuple, str] = {}


async def serve_download(q: Q, key: tuple, path: str) -> str:
    """Hand `path` to waved for download; the file served before under `key` is deleted."""
    (url,) = await q.site.upload([path])
    previous = _served.get(key)
    _served[key] = url
    if previous and previous != url:
        await q.site.unload(previous)
    return url


async def take_upload(q: Q, url: str, local_dir: str) -> str:
    """Copy an uploaded file to `local_dir` and delete it from waved; returns the local path."""
    path = await q.site.download(url, local_dir)
    await q.site.unload(url)
    return path
