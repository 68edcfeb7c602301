"""The archive on disk or object storage: its layout (every key), storage backends, the
Parquet sink, the checkpoint journal, integrity checks and the documented readers."""
