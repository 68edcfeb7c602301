"""``harvester probe``: a few read-only requests that check every assumption the harvester makes
about the service, one row each (PASS, DIFFERENT or UNKNOWN).

``findings`` (what was asked and answered, and how answers decode), ``choices`` (what to ask
next, from what came back) and ``judge`` (findings into rows) are PURE and tested without a
server or an event loop; ``session`` sends the requests, paced and within a budget, and
records them when asked.
"""
