"""The checkpoint: an append-only journal of finished and failed windows, its file format, and
the state folded from it."""
