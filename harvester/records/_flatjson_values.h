/* JSON values → C values, for _flatjson.c: texts (checked as UTF-8), numbers (rounded as
 * strtod rounds them), the plain ISO-8601 times of "date". Every scan stops at `end` and
 * refuses (returns 0) what it is not sure of. Included once, by _flatjson.c.
 */
#ifndef HARVESTER_FLATJSON_VALUES_H
#define HARVESTER_FLATJSON_VALUES_H

#define MAX_NUMBER_TEXT 64

static locale_t c_locale;

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Length of a valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static int utf8_length(const unsigned char *s, Py_ssize_t n) {
    unsigned char c = s[0];
    if (c < 0xC2 || c > 0xF4) return 0;
    int len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n < len) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* beyond U+10FFFF */
    return len;
}

/* Bytes a text cannot hold as they are: the closing quote, a backslash, control characters,
 * and the start of a multi-byte sequence (checked as UTF-8). Everything else is skipped with
 * one look-up a byte. */
static unsigned char text_stop[256];

static void init_text_stop(void) {
    for (int c = 0; c < 256; c++) text_stop[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
}

/* A text after its opening quote at *cursor: its bytes [*start, *start + *len), the cursor
 * past its closing quote; or 0 to refuse. */
static int scan_text(const unsigned char **cursor, const unsigned char *end, const char **start,
                     Py_ssize_t *len) {
    const unsigned char *s = *cursor;
    const unsigned char *q = s;
    for (;;) {
        while (q < end && !text_stop[*q]) q++;
        if (q >= end) return 0;
        unsigned char c = *q;
        if (c == '"') {
            *start = (const char *)s;
            *len = q - s;
            *cursor = q + 1;
            return 1;
        }
        if (c < 0x80) return 0; /* a backslash or a control character */
        int n = utf8_length(q, end - q);
        if (!n) return 0;
        q += n;
    }
}

static int looks_like_time(const char *s, Py_ssize_t n) {
    static const char shape[] = "dddd-dd-dd";
    if (n < 10) return 0;
    for (int i = 0; i < 10; i++) {
        if (shape[i] == 'd' ? !is_digit((unsigned char)s[i]) : s[i] != '-') return 0;
    }
    return 1;
}

static int digits(const char *s, int n) {
    int value = 0;
    for (int i = 0; i < n; i++) value = value * 10 + (s[i] - '0');
    return value;
}

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t year_of_era = y - era * 400;
    int64_t day_of_year = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static int days_in_month(int y, int m) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : days[m - 1];
}

/* YYYY-MM-DDTHH:MM:SS, optionally .mmm, then Z or ±HH:MM: milliseconds since the epoch, UTC.
 * Every other form, and any field out of range, is left to pyarrow.json (0). */
static int iso_time_ms(const char *s, Py_ssize_t n, int64_t *ms) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    if (n < 20) return 0;
    for (int i = 0; i < 19; i++) {
        if (shape[i] == 'd' ? !is_digit((unsigned char)s[i]) : s[i] != shape[i]) return 0;
    }
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 59)
        return 0;
    Py_ssize_t i = 19;
    int millis = 0;
    if (s[i] == '.') {
        if (n < 24 || !is_digit((unsigned char)s[20]) || !is_digit((unsigned char)s[21]) ||
            !is_digit((unsigned char)s[22]))
            return 0;
        millis = digits(s + 20, 3);
        i = 23;
    }
    int offset_minutes = 0;
    if (n - i == 6 && (s[i] == '+' || s[i] == '-') && is_digit((unsigned char)s[i + 1]) &&
        is_digit((unsigned char)s[i + 2]) && s[i + 3] == ':' &&
        is_digit((unsigned char)s[i + 4]) && is_digit((unsigned char)s[i + 5])) {
        int hours = digits(s + i + 1, 2), minutes = digits(s + i + 4, 2);
        if (hours > 23 || minutes > 59) return 0;
        offset_minutes = (s[i] == '-' ? -1 : 1) * (hours * 60 + minutes);
    } else if (n - i != 1 || s[i] != 'Z') {
        return 0;
    }
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - offset_minutes * 60;
    *ms = seconds * 1000 + millis;
    return 1;
}

/* A number at *cursor: *is_int with *as_int, or a double in *as_float, the cursor past it;
 * or 0 to refuse. */
static int scan_number(const unsigned char **cursor, const unsigned char *end, int *is_int,
                       int64_t *as_int, double *as_float) {
    const unsigned char *start = *cursor, *q = *cursor;
    int negative = 0;
    if (q < end && *q == '-') {
        negative = 1;
        q++;
    }
    if (q >= end) return 0;
    uint64_t mantissa = 0;
    int significant = 0, fraction_digits = 0, fractional = 0;
    if (*q == '0') {
        q++;
    } else if (is_digit(*q)) {
        while (q < end && is_digit(*q)) {
            if (significant < 19) mantissa = mantissa * 10 + (uint64_t)(*q - '0');
            significant += (significant || *q != '0');
            q++;
        }
    } else {
        return 0;
    }
    int integer_digits = significant;
    if (q < end && *q == '.') {
        fractional = 1;
        q++;
        if (q >= end || !is_digit(*q)) return 0;
        while (q < end && is_digit(*q)) {
            if (significant < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*q - '0');
                fraction_digits++;
            }
            significant += (significant || *q != '0');
            q++;
        }
    }
    long exponent = 0;
    if (q < end && (*q == 'e' || *q == 'E')) {
        fractional = 1;
        q++;
        int exponent_negative = 0;
        if (q < end && (*q == '+' || *q == '-')) exponent_negative = *q++ == '-';
        if (q >= end || !is_digit(*q)) return 0;
        while (q < end && is_digit(*q)) {
            if (exponent < 100000) exponent = exponent * 10 + (*q - '0');
            q++;
        }
        if (exponent_negative) exponent = -exponent;
    }
    *cursor = q;
    if (!fractional) {
        if (integer_digits > 19) return 0;
        if (negative ? mantissa > (uint64_t)INT64_MAX + 1 : mantissa > (uint64_t)INT64_MAX)
            return 0;
        *is_int = 1;
        *as_int = negative ? (int64_t)(0 - mantissa) : (int64_t)mantissa;
        return 1;
    }
    *is_int = 0;
    long scale = exponent - fraction_digits;
    if (significant <= 15 && scale >= -22 && scale <= 22) {
        /* Both operands are exact doubles, so one IEEE operation rounds correctly. */
        double value = (double)mantissa;
        value = scale < 0 ? value / POW10[-scale] : value * POW10[scale];
        *as_float = negative ? -value : value;
        return 1;
    }
    Py_ssize_t n = q - start;
    if (n >= MAX_NUMBER_TEXT) return 0;
    char text[MAX_NUMBER_TEXT];
    memcpy(text, start, (size_t)n);
    text[n] = '\0';
    errno = 0;
    char *stop;
    double value = strtod_l(text, &stop, c_locale);
    /* ERANGE with a non-zero finite value is a subnormal, still correctly rounded. */
    if (stop != text + n || !isfinite(value) || (errno && value == 0)) return 0;
    *as_float = value;
    return 1;
}

#endif
