"""``simulate --replay DIR``: serve a recorded session (``docs/recording.md``).

A request gets the answer recorded for the same method, path, query and body (``recording.
request_key``); a sign-in gets the recorded sign-in answer whatever credentials it sends, and
no token is checked, since a recording holds only placeholders for them. A request recorded
several times gets the recorded answers in turn, then the last one again. Any other request
gets a 404 whose JSON body names it. ``GET /__sim/stats`` counts requests as the simulator
does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

import orjson
import structlog
from aiohttp import web

from harvester.simulator.recording import Exchange, RequestKey, request_key
from harvester.simulator.stats import Stats

log = structlog.get_logger(__name__)

#: Headers that describe the recorded connection, not the answer: aiohttp writes its own.
_FRAMING = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
)


class Replayer:
    """The recorded answers by request, and how many times each request was answered."""

    def __init__(self, exchanges: Iterable[Exchange]) -> None:
        self._answers: dict[Hashable, list[Exchange]] = {}
        self._served: Counter[Hashable] = Counter()
        for exchange in exchanges:
            key = (exchange.method, exchange.path) if exchange.sign_in else exchange.key
            self._answers.setdefault(key, []).append(exchange)

    def answer(self, key: RequestKey) -> Exchange | None:
        """The recorded answer to the request of ``key``, or None when none was recorded."""
        method, path, _, _ = key
        sign_in = (method, path)
        found: Hashable = sign_in if sign_in in self._answers else key
        answers = self._answers.get(found)
        if answers is None:
            return None
        turn = self._served[found]
        self._served[found] += 1
        return answers[min(turn, len(answers) - 1)]


_REPLAYER = web.AppKey("replayer", Replayer)
_STATS = web.AppKey("replay_stats", Stats)


def _unmatched(method: str, path: str, query: list[tuple[str, str]], body: bytes) -> web.Response:
    try:
        shown: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        shown = body.decode(errors="replace")
    message = f"replay: nothing was recorded for {method} {path} with this query and body"
    log.warning("replay_unmatched", method=method, path=path)
    payload = {
        "message": message,
        "statusCode": 404,
        "request": {"method": method, "path": path, "query": query, "body": shown},
    }
    return web.Response(body=orjson.dumps(payload), status=404, content_type="application/json")


async def _replay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    query = list(request.query.items())
    key = request_key(request.method, request.path, query, body)
    exchange = request.app[_REPLAYER].answer(key)
    if exchange is None:
        return _unmatched(request.method, request.path, query, body)
    headers = [(name, value) for name, value in exchange.headers if name.lower() not in _FRAMING]
    return web.Response(body=exchange.body, status=exchange.status, headers=headers)


@web.middleware
async def _count(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    request.app[_STATS].count(request.path, str(response.status))
    return response


async def _stats(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=orjson.dumps(request.app[_STATS].snapshot()), content_type="application/json"
    )


def build_replay_app(exchanges: Iterable[Exchange]) -> web.Application:
    """An application answering every request with its recorded answer."""
    app = web.Application(middlewares=[_count])
    app[_REPLAYER] = Replayer(exchanges)
    app[_STATS] = Stats()
    app.router.add_get("/__sim/stats", _stats)
    app.router.add_route("*", "/{tail:.*}", _replay)
    return app
