"""PURE planning: the UTC window grid and local day ranges, the planner, shards.

Nothing here does I/O or imports aiohttp or asyncio (an import-linter contract)."""
