"""How the client's session reaches the server: the environment's proxy, the TLS context,
and reading a reply's body no further than a cap.

Part of the client's aiohttp boundary (with :mod:`harvester.api.client` and
:mod:`harvester.api.replies`): an unreadable CA bundle becomes a ``ConfigError`` here.
"""

from __future__ import annotations

import ssl

import aiohttp
import yarl

from harvester.errors import ConfigError


def env_proxy(url: yarl.URL) -> tuple[yarl.URL | None, aiohttp.BasicAuth | None]:
    """The proxy ``HTTP(S)_PROXY``/``NO_PROXY`` (and ``~/.netrc``) choose for ``url``."""
    try:
        return aiohttp.helpers.get_env_proxy_for_url(url)
    except LookupError:
        return None, None


def ssl_context(url: yarl.URL, ca_bundle: str | None) -> ssl.SSLContext | bool:
    """A context with the CA bundle for https; plain http needs none (building one
    takes ~50 ms of loading the system's certificates)."""
    if url.scheme != "https":
        return True
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load --ca-bundle {ca_bundle}: {exc}") from None
    return context


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """The body and True; or, when it is longer than ``cap`` bytes (counted as it arrives,
    inflated when sent compressed), the part read before the cap and False, with the
    connection dropped: no more than the cap and one network chunk is ever held. A success
    announcing a longer Content-Length is refused unread; a failure's start is still read,
    for the excerpt its error shows."""
    declared = response.content_length
    if declared is not None and declared > cap and 200 <= response.status < 300:
        response.close()
        return b"", False
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > cap:
            response.close()
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True
