"""Tokens: HS256 signature, lifetime on the real clock, refusal reasons."""

from __future__ import annotations

import base64
import hashlib
import hmac

from harvester.simulator.auth import TokenAuthority, make_account

ACCOUNT = make_account("demo@example.com", "demo", 1)


def test_token_is_a_valid_hs256_jwt_with_the_configured_lifetime() -> None:
    """The signature verifies with HMAC-SHA256 and exp - iat is the configured TTL."""
    clock = [1_700_000_000.0]
    authority = TokenAuthority(1, 28_800, clock=lambda: clock[0])
    token = authority.issue(ACCOUNT)
    header, payload, signature = token.split(".")
    secret = hashlib.sha256(b"sensit-simulator:1").digest()
    expected = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature
    claims, reason = authority.check(f"Bearer {token}")
    assert reason == ""
    assert claims is not None
    assert claims["exp"] - claims["iat"] == 28_800
    assert claims["iat"] == 1_700_000_000


def test_token_expires_on_the_clock() -> None:
    """A token is refused once its ``exp`` has passed."""
    clock = [1_700_000_000.0]
    authority = TokenAuthority(1, 60, clock=lambda: clock[0])
    header = f"Bearer {authority.issue(ACCOUNT)}"
    assert authority.check(header)[0] is not None
    clock[0] += 61
    assert authority.check(header) == (None, "token expired")


def test_bad_headers_are_refused_with_a_reason() -> None:
    """Missing, non-Bearer, malformed and foreign-signed tokens are refused."""
    authority = TokenAuthority(1, 60)
    foreign = TokenAuthority(2, 60).issue(ACCOUNT)
    for header in (None, "", "Basic abc", "Bearer ", "Bearer a.b", f"Bearer {foreign}"):
        claims, reason = authority.check(header)
        assert claims is None
        assert reason


def test_user_id_is_24_hex_and_stable() -> None:
    """The account id is a 24-hex ObjectId, the same for the same seed and e-mail."""
    assert len(ACCOUNT.user_id) == 24
    int(ACCOUNT.user_id, 16)
    assert make_account("demo@example.com", "x", 1).user_id == ACCOUNT.user_id
    assert make_account("demo@example.com", "demo", 2).user_id != ACCOUNT.user_id
