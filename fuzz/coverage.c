/* Edge coverage for the fuzzer, from gcc's -fsanitize-coverage=trace-pc (gcc has no libFuzzer
 * of its own): the instrumented reader calls __sanitizer_cov_trace_pc at every basic block,
 * and each (previous block, block) pair bumps one counter of a map the driver reads through
 * ctypes, as AFL does. Built without the instrumentation, into the sanitized _flatjson only.
 */
#include <stdint.h>
#include <string.h>

#define FUZZCOV_MAP_SIZE (1 << 16)

unsigned char fuzzcov_map[FUZZCOV_MAP_SIZE];
static uintptr_t previous;

void __sanitizer_cov_trace_pc(void) {
    /* Fibonacci hashing spreads the nearby addresses of one function over the map. */
    uintptr_t block = ((uintptr_t)__builtin_return_address(0) * 0x9E3779B97F4A7C15u) >> 48;
    unsigned char *counter = &fuzzcov_map[(block ^ previous) & (FUZZCOV_MAP_SIZE - 1)];
    if (*counter < 255) (*counter)++;
    previous = block >> 1;
}

void fuzzcov_reset(void) {
    memset(fuzzcov_map, 0, sizeof fuzzcov_map);
    previous = 0;
}

int fuzzcov_map_size(void) { return FUZZCOV_MAP_SIZE; }
