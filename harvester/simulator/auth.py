"""Accounts and HS256 JSON Web Tokens, with the standard library only.

Tokens carry the payload of the vendor's sample token (``email``, ``role``, ``displayName``,
``status``, ``iat``, ``exp``) with ``exp - iat`` = the configured lifetime. ``iat``/``exp``
follow the real wall clock, not the simulated present, so expiry behaves as in production.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from harvester.simulator.hashing import mix64, text_key

ROLE = "SystemAdministrator"
_HEADER = {"alg": "HS256", "typ": "JWT"}
_CACHE_LIMIT = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Account:
    """The one account of a simulator run."""

    email: str
    password: str
    user_id: str
    display_name: str

    def user(self) -> dict[str, str]:
        """The ``user`` object of the sign-in answer."""
        return {
            "id": self.user_id,
            "role": ROLE,
            "email": self.email,
            "displayName": self.display_name,
            "status": "Active",
        }


def make_account(email: str, password: str, seed: int) -> Account:
    """The account for ``email``, its 24-hex id derived from the seed and the address."""
    bits = mix64(seed, text_key(email))
    user_id = f"{bits:016x}{mix64(bits) & 0xFFFFFFFF:08x}"
    name = email.split("@", 1)[0].replace(".", " ").title() or "User"
    return Account(email=email, password=password, user_id=user_id, display_name=name)


class TokenAuthority:
    """Issues and checks the run's tokens (the secret is derived from the seed)."""

    def __init__(self, seed: int, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._secret = hashlib.sha256(f"sensit-simulator:{seed}".encode()).digest()
        self._ttl = ttl_s
        self._clock = clock
        self._verified: dict[str, dict[str, Any]] = {}

    def issue(self, account: Account) -> str:
        issued = int(self._clock())
        payload = {
            "email": account.email,
            "role": ROLE,
            "displayName": account.display_name,
            "status": "Active",
            "iat": issued,
            "exp": issued + self._ttl,
        }
        signing_input = f"{_b64(orjson.dumps(_HEADER))}.{_b64(orjson.dumps(payload))}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def _sign(self, signing_input: str) -> str:
        return _b64(hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest())

    def check(self, authorization: str | None) -> tuple[dict[str, Any] | None, str]:
        """(claims, "") for a valid ``Bearer`` header, else (None, why it was refused)."""
        if not authorization:
            return None, "missing Authorization header"
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "Authorization is not a Bearer token"
        token = token.strip()
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if claims is None:
                return None, "malformed token or bad signature"
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = claims
        if claims["exp"] <= self._clock():
            return None, "token expired"
        return claims, ""

    def _decode(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = self._sign(f"{parts[0]}.{parts[1]}")
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            return None
        return claims
