"""A mock network for the address policy's redirect tests (the agents' http_request tool, RAG url sources): a
public host whose redirects lead to private addresses or to another public page. Nothing leaves this machine."""

from __future__ import annotations

from typing import Any

import httpx

PUBLIC = "http://93.184.216.34"
# path -> (status, location): every redirect status a client follows, to loopback and to the metadata address
REFUSED = {"/to-loopback": (302, "http://127.0.0.1:8080/admin"),
           "/to-metadata": (301, "http://169.254.169.254/latest/meta-data/"),
           "/to-metadata-307": (307, "http://169.254.169.254/latest/meta-data/"),
           "/to-loopback-308": (308, "http://[::1]/admin")}
# relative redirects on the public host, which are followed to FINAL
FOLLOWED = {"/hop": (302, "/final"), "/hop-301": (301, "/final")}
FINAL = "/final"


def redirecting(seen: list[str], **page: Any) -> httpx.MockTransport:
    """A transport answering REFUSED and FOLLOWED with their redirects and any other path with a 200 made of
    `page` (httpx.Response's keywords: text=..., html=...); every requested URL is appended to `seen`."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        redirect = REFUSED.get(request.url.path) or FOLLOWED.get(request.url.path)
        if redirect is not None:
            return httpx.Response(redirect[0], headers={"location": redirect[1]})
        return httpx.Response(200, **page)

    return httpx.MockTransport(handler)
