"""The baseline for pause throughput: a bare aiohttp app that parses the same JSON and answers 201."""

from __future__ import annotations

import sys

from aiohttp import web


async def create(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"id": "baseline", "flow": body.get("flow")}, status=201)


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/runs", create)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
