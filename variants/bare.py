"""`python -m variants.bare --body FILE --server S --port P`: the edge's HTTP stack, no domain.

The same server (`variants.edge.servers`, the same settings and worker class), the same
framework (falcon) and the same process model as the monolith's single worker, answering
`GET /products/{id}` with a fixed body (the monolith's own answer, saved to FILE), so a load
test against it measures what the HTTP stack alone allows: the ceiling the monolith is held to,
and the floor a latency figure is read against.

With `--catalog FILE`, `GET /products` (any query) answers FILE's bytes too: the catalogue page
the lab's shoppers learn product ids from (`workloads/locustfile.py` `learn_catalog`), saved
from the monolith likewise, so the lab's unmodified load generator can drive the bare endpoint
(`archlab bench floor`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import falcon
from gunicorn.app.base import BaseApplication

from variants import telemetry
from variants.edge import servers


class _Fixed:
    """The same bytes whatever the path's parameters or the query say."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def on_get(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        resp.data = self.body
        resp.content_type = falcon.MEDIA_JSON


class _Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = b'{"status":"ok"}'
        resp.content_type = falcon.MEDIA_JSON


def create_app(body: bytes, catalog: bytes | None = None) -> falcon.App:
    app = falcon.App()
    app.add_route("/products/{product_id:int}", _Fixed(body))
    if catalog is not None:
        app.add_route("/products", _Fixed(catalog))
    app.add_route("/healthz", _Health())
    return app


class BareServer(BaseApplication):
    def __init__(
        self, *, port: int, server: str, threads: int, body: bytes, catalog: bytes | None = None
    ) -> None:
        self.options: dict[str, Any] = {
            "bind": f"127.0.0.1:{port}",
            "workers": 1,
            **servers.settings(server),
            "threads": threads,
            "keepalive": 30,
            "backlog": 2048,
            "proc_name": telemetry.process_title("bare"),
            "accesslog": None,
            "loglevel": "warning",
            "control_socket_disable": True,
        }
        self.body = body
        self.catalog = catalog
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> falcon.App:
        return create_app(self.body, self.catalog)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m variants.bare", description=__doc__)
    p.add_argument("--body", type=Path, required=True, help="the bytes GET /products/{id} answers")
    p.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="the bytes GET /products (any query) answers; without it that path is a 404",
    )
    p.add_argument("--server", choices=servers.SERVERS, default=servers.DEFAULT_SERVER)
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1")
    p.add_argument("--threads", type=int, default=8, help="request threads (as the monolith's)")
    args = p.parse_args(argv)
    BareServer(
        port=args.port,
        server=args.server,
        threads=args.threads,
        body=args.body.read_bytes(),
        catalog=args.catalog.read_bytes() if args.catalog is not None else None,
    ).run()


if __name__ == "__main__":
    main()
