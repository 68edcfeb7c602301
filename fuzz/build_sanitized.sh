#!/usr/bin/env bash
# Builds harvester.records._flatjson a second time, for the fuzzer: AddressSanitizer and UBSan (every
# report fatal), gcc's trace-pc edge coverage (coverage.c), and FLATJSON_EXACT_COPY so that a
# read one byte past a body's end is reported. Output: $FUZZ_BUILD (fuzz/build) /_flatjson*.so,
# never on the import path of the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${FUZZ_BUILD:-fuzz/build}
CC=${CC:-gcc}
asan=$($CC -print-file-name=libasan.so)
if [[ "$asan" != /* ]]; then
    echo "build_sanitized.sh: $CC has no AddressSanitizer runtime (libasan.so)" >&2
    exit 2
fi
include=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
mkdir -p "$OUT"
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
$CC -O1 -g -std=c11 -Wall -Wextra -Werror -fPIC "${sanitize[@]}" -fsanitize-coverage=trace-pc \
    -DFLATJSON_EXACT_COPY -I"$include" -c harvester/records/_flatjson.c -o "$OUT/_flatjson.o"
$CC -O2 -std=c11 -Wall -Wextra -Werror -fPIC -c fuzz/coverage.c -o "$OUT/coverage.o"
$CC -shared "${sanitize[@]}" "$OUT/_flatjson.o" "$OUT/coverage.o" -o "$OUT/_flatjson$suffix"
echo "$OUT/_flatjson$suffix"
