# Each column: name, kind (0 null, 1 int64, 2 float64, 3 string, 4 date as ms UTC, 5 bool), null
# count, validity bitmap (None without nulls), values (offsets for strings), string bytes.
_Column = tuple[str, int, int, bytes | None, bytes | None, bytes | None]

def read_columns(
    body: bytes, max_fields: int, max_cells: int, release_gil_from: int
) -> tuple[int, list[_Column]] | None: ...
def scan_shape(
    body: bytes, max_depth: int, max_names: int, release_gil_from: int
) -> tuple[int, int, int]: ...
