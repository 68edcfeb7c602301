"""How the client's session reaches the server: the environment's proxy and the TLS context.

Part of the client's aiohttp boundary (with :mod:`harvester.client` and
:mod:`harvester.client_replies`): an unreadable CA bundle becomes a ``ConfigError`` here.
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
