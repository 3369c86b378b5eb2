"""A file server that does not bottleneck a benchmark (aiohttp, sendfile), with an optional
per-connection rate cap (like CDNs that throttle each connection).

    python tests/dlserver/fast.py FILE [--rate BYTES_PER_S]   # prints "PORT <n>" when ready
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys

from aiohttp import web

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def make_app(path: str, rate: float | None) -> web.Application:
    name = "/" + os.path.basename(path)

    async def sendfile(request: web.Request) -> web.StreamResponse:
        # FileResponse: sendfile(2), Range, If-Range, ETag, Last-Modified
        return web.FileResponse(path, chunk_size=1 << 20)

    async def capped(request: web.Request) -> web.StreamResponse:
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        m = _RANGE.match(request.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1), "ETag": '"bench"'}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        began = loop.time()
        sent = 0
        remaining = end - start + 1
        with open(path, "rb") as fh:
            fh.seek(start)
            while remaining > 0:
                chunk = fh.read(min(256 * 1024, remaining))
                if not chunk:
                    break
                try:
                    await resp.write(chunk)
                except ConnectionError:  # the client closed early (a stolen segment): normal
                    return resp
                sent += len(chunk)
                remaining -= len(chunk)
                ahead = sent / rate - (loop.time() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get(name, capped if rate else sendfile)
    return app


async def _serve(path: str, rate: float | None) -> None:
    runner = web.AppRunner(make_app(path, rate), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=128)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--rate", type=float, default=None, help="bytes per second per connection")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.file, args.rate))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
