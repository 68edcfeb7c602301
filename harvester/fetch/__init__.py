"""Fetching windows: the bounded worker pool, the request gate, pacing and back-off decisions
(PURE), and the retry driver."""
