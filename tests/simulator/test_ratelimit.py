"""Token buckets per account."""

from __future__ import annotations

from harvester.simulator.ratelimit import RateLimiter


def test_bucket_holds_rate_tokens_and_refills_at_rate_per_second() -> None:
    """R requests pass at once, the next waits 1/R s; after that time one more passes."""
    clock = [100.0]
    limiter = RateLimiter(4.0, clock=lambda: clock[0])
    assert [limiter.take("a") for _ in range(4)] == [None] * 4
    wait = limiter.take("a")
    assert wait is not None
    assert abs(wait - 0.25) < 1e-9
    assert limiter.take("b") is None
    clock[0] += 0.25
    assert limiter.take("a") is None
    assert limiter.take("a") is not None


def test_zero_rate_means_no_limit_and_slow_rates_still_pass_one() -> None:
    """Rate 0 disables the limiter; a rate below 1/s still lets one request through."""
    assert all(RateLimiter(0).take("a") is None for _ in range(100))
    slow = RateLimiter(0.5, clock=lambda: 0.0)
    assert slow.take("a") is None
    assert slow.take("a") == 2.0


def test_retry_after_is_rounded_up_and_omitted_every_third_refusal() -> None:
    """Retry-After is whole seconds (at least 1); every third refusal carries none."""
    limiter = RateLimiter(1.0)
    headers = [limiter.retry_after_header(wait) for wait in (0.2, 1.5, 3.0, 0.1, 2.01, 5.0)]
    assert headers == ["1", "2", None, "1", "3", None]
