/* A reader for the one shape nearly every records body has: {"data": [flat record, ...]}.
 *
 * A flat record is an object whose values are numbers, texts, booleans or null. The reader
 * builds one Arrow-layout column per field (validity bits, int64/float64 values, bits, or
 * int32 offsets and UTF-8 bytes) in one pass, without a Python object per value (and, for a
 * large body, without the GIL). It types a field as pyarrow.json does: integers → int64, any
 * number with a fraction or an exponent → float64 (integers beside it are converted), texts
 * → string, booleans → bool, only nulls → null.
 *
 * It refuses, by returning None, every body it does not read exactly as pyarrow.json would,
 * and the caller then uses pyarrow.json: anything but that envelope, nested values, escapes
 * in texts, a field holding two kinds (numbers and texts, a boolean beside a number), a
 * repeated key, integers beyond 64 bits, numbers it would round differently, a text beyond
 * "date" that pyarrow.json may read as a time, a "date" not in the plain ISO-8601 form. Refusing only costs time, so every
 * doubt ends in a refusal. A malformed body is refused too, never read past its end.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__APPLE__)
#include <xlocale.h>
#endif

/* KIND_TIME: the "date" field, int64 milliseconds since the epoch, UTC. KIND_BOOL: one byte a
 * row until the end, then an Arrow bitmap. */
enum { KIND_NULL = 0, KIND_INT = 1, KIND_FLOAT = 2, KIND_STRING = 3, KIND_TIME = 4, KIND_BOOL = 5 };

/* Bodies smaller than this are read holding the GIL: on the event loop, handing the GIL over
 * for a few microseconds of parsing can cost a wait of a whole switch interval to get it back
 * from a writer thread. */
#define RELEASE_GIL_FROM 65536

#define MAX_COLUMNS 4096
#define MAX_NUMBER_TEXT 64

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    int kind;
    Py_ssize_t len;       /* rows filled so far */
    Py_ssize_t seen_row;  /* the last row that set this field: a repeated key */
    Py_ssize_t nulls;
    uint8_t *valid;       /* one byte a row until the end */
    void *values;         /* int64_t or double, one a row */
    int32_t *offsets;     /* rows + 1 */
    char *chars;
    Py_ssize_t chars_len, chars_cap;
} Column;

typedef struct {
    const unsigned char *p, *end;
    Py_ssize_t cap;  /* an upper bound of the records: the count of '{' */
    Py_ssize_t rows;
    Column *columns;
    Py_ssize_t ncolumns, columns_cap;
    Py_ssize_t hint; /* the column the next key most likely names */
} Reader;

static locale_t c_locale;

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static void skip_space(Reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static int take(Reader *r, unsigned char c) {
    skip_space(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return 1;
    }
    return 0;
}

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

/* A text after its opening quote: its bytes [*start, *start + *len), or 0 to refuse. */
static int read_text(Reader *r, const char **start, Py_ssize_t *len) {
    const unsigned char *s = r->p;
    const unsigned char *q = s;
    for (;;) {
        while (q < r->end && !text_stop[*q]) q++;
        if (q >= r->end) return 0;
        unsigned char c = *q;
        if (c == '"') {
            *start = (const char *)s;
            *len = q - s;
            r->p = q + 1;
            return 1;
        }
        if (c < 0x80) return 0; /* a backslash or a control character */
        int n = utf8_length(q, r->end - q);
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

/* A number: *is_int with *as_int, or a double in *as_float; 0 to refuse. */
static int read_number(Reader *r, int *is_int, int64_t *as_int, double *as_float) {
    const unsigned char *start = r->p, *q = r->p, *end = r->end;
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
    r->p = q;
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

static int same_name(const Column *c, const char *name, Py_ssize_t len) {
    if (c->name_len != len) return 0;
    for (Py_ssize_t i = 0; i < len; i++)
        if (c->name[i] != name[i]) return 0;
    return 1;
}

static Column *column_named(Reader *r, const char *name, Py_ssize_t len) {
    /* Records nearly always list their fields in one order: start from the one after the
     * last match, and wrap without a division (two a key cost more than the compare). */
    Py_ssize_t n = r->ncolumns;
    Py_ssize_t at = r->hint < n ? r->hint : 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        Column *c = &r->columns[at];
        if (same_name(c, name, len)) {
            r->hint = at + 1;
            return c;
        }
        if (++at == n) at = 0;
    }
    if (n == MAX_COLUMNS) return NULL;
    if (n == r->columns_cap) {
        Py_ssize_t cap = r->columns_cap ? 2 * r->columns_cap : 32;
        Column *grown = realloc(r->columns, (size_t)cap * sizeof(Column));
        if (!grown) return NULL;
        r->columns = grown;
        r->columns_cap = cap;
    }
    Column *c = &r->columns[n];
    memset(c, 0, sizeof(Column));
    c->name = name;
    c->name_len = len;
    c->seen_row = -1;
    c->valid = calloc((size_t)r->cap, 1);
    if (!c->valid) return NULL;
    r->ncolumns = n + 1;
    r->hint = 0;
    return c;
}

/* Rows before `row` that the field skipped are nulls. */
static void pad(Column *c, Py_ssize_t row) {
    if (c->kind == KIND_STRING)
        for (Py_ssize_t k = c->len; k < row; k++) c->offsets[k + 1] = (int32_t)c->chars_len;
    c->nulls += row - c->len;
    c->len = row;
}

static int become(Reader *r, Column *c, int kind) {
    if (c->kind == kind) return 1;
    if (c->kind == KIND_NULL) {
        c->kind = kind;
        if (kind == KIND_STRING) {
            c->offsets = calloc((size_t)r->cap + 1, sizeof(int32_t));
            return c->offsets != NULL;
        }
        c->values = calloc((size_t)r->cap, 8);
        return c->values != NULL;
    }
    if (c->kind == KIND_INT && kind == KIND_FLOAT) {
        int64_t *ints = c->values;
        double *floats = c->values;
        for (Py_ssize_t k = 0; k < c->len; k++) floats[k] = (double)ints[k];
        c->kind = KIND_FLOAT;
        return 1;
    }
    return c->kind == KIND_FLOAT && kind == KIND_INT;
}

static int append_chars(Column *c, const char *s, Py_ssize_t n) {
    if (n == 0) return 1;
    if (c->chars_len + n > c->chars_cap) {
        Py_ssize_t cap = c->chars_cap ? c->chars_cap : 4096;
        while (cap < c->chars_len + n) cap *= 2;
        char *grown = realloc(c->chars, (size_t)cap);
        if (!grown) return 0;
        c->chars = grown;
        c->chars_cap = cap;
    }
    memcpy(c->chars + c->chars_len, s, (size_t)n);
    c->chars_len += n;
    return 1;
}

static int is_date(const Column *c) { return c->name_len == 4 && memcmp(c->name, "date", 4) == 0; }

/* One value of field c in the current row; 0 to refuse the body. */
static int read_value(Reader *r, Column *c) {
    Py_ssize_t row = r->rows;
    if (c->seen_row == row) return 0;
    c->seen_row = row;
    pad(c, row);
    skip_space(r);
    if (r->p >= r->end) return 0;
    unsigned char first = *r->p;
    if (first == 'n') {
        if (r->end - r->p < 4 || memcmp(r->p, "null", 4) != 0) return 0;
        r->p += 4;
        if (c->kind == KIND_STRING) c->offsets[row + 1] = (int32_t)c->chars_len;
        c->nulls++;
        c->len = row + 1;
        return 1;
    }
    if (first == '"') {
        r->p++;
        const char *s;
        Py_ssize_t n;
        if (!read_text(r, &s, &n)) return 0;
        if (is_date(c)) {
            int64_t ms;
            if (!iso_time_ms(s, n, &ms) || !become(r, c, KIND_TIME)) return 0;
            ((int64_t *)c->values)[row] = ms;
        } else {
            if (looks_like_time(s, n) || !become(r, c, KIND_STRING) || !append_chars(c, s, n))
                return 0;
            c->offsets[row + 1] = (int32_t)c->chars_len;
        }
    } else if ((first == 't' || first == 'f') && !is_date(c)) {
        int truth = first == 't';
        const char *word = truth ? "true" : "false";
        size_t n = truth ? 4 : 5;
        if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return 0;
        r->p += n;
        if (!become(r, c, KIND_BOOL)) return 0;
        ((uint8_t *)c->values)[row] = (uint8_t)truth;
    } else if ((first == '-' || is_digit(first)) && !is_date(c)) {
        int is_int;
        int64_t as_int;
        double as_float;
        if (!read_number(r, &is_int, &as_int, &as_float)) return 0;
        if (!become(r, c, is_int ? KIND_INT : KIND_FLOAT)) return 0;
        if (c->kind == KIND_INT)
            ((int64_t *)c->values)[row] = as_int;
        else
            ((double *)c->values)[row] = is_int ? (double)as_int : as_float;
    } else {
        return 0;
    }
    c->valid[row] = 1;
    c->len = row + 1;
    return 1;
}

/* The column after the last one matched, when the key at r->p (past its opening quote) is
 * its name followed by the closing quote: the key is then that name, already checked as a
 * text, so it is neither scanned nor looked up. */
static Column *expected_key(Reader *r) {
    if (r->hint >= r->ncolumns) r->hint = 0; /* the next record starts over */
    if (r->ncolumns == 0) return NULL;
    Column *c = &r->columns[r->hint];
    if (r->end - r->p <= c->name_len || r->p[c->name_len] != '"' ||
        memcmp(r->p, c->name, (size_t)c->name_len) != 0)
        return NULL;
    r->p += c->name_len + 1;
    r->hint++;
    return c;
}

static int read_record(Reader *r) {
    if (!take(r, '{') || r->rows >= r->cap) return 0;
    if (take(r, '}')) goto done;
    do {
        if (!take(r, '"')) return 0;
        Column *c = expected_key(r);
        if (!c) {
            const char *name;
            Py_ssize_t len;
            if (!read_text(r, &name, &len)) return 0;
            c = column_named(r, name, len);
        }
        if (!c || !take(r, ':') || !read_value(r, c)) return 0;
    } while (take(r, ','));
    if (!take(r, '}')) return 0;
done:
    r->rows++;
    return 1;
}

static int read_body(Reader *r) {
    if (!take(r, '{') || !take(r, '"')) return 0;
    const char *name;
    Py_ssize_t len;
    if (!read_text(r, &name, &len) || len != 4 || memcmp(name, "data", 4) != 0) return 0;
    if (!take(r, ':') || !take(r, '[')) return 0;
    if (!take(r, ']')) {
        do {
            if (!read_record(r)) return 0;
        } while (take(r, ','));
        if (!take(r, ']')) return 0;
    }
    if (!take(r, '}')) return 0;
    skip_space(r);
    /* Records without a field make rows but no column: pyarrow.json's error to report. */
    return r->p == r->end && (r->rows == 0 || r->ncolumns > 0);
}

static void free_reader(Reader *r) {
    for (Py_ssize_t k = 0; k < r->ncolumns; k++) {
        free(r->columns[k].valid);
        free(r->columns[k].values);
        free(r->columns[k].offsets);
        free(r->columns[k].chars);
    }
    free(r->columns);
}

/* Bytes of 0 or 1, one a row, packed into an Arrow bitmap in place (least significant bit
 * first): the validity of every column, and the values of a bool column. */
static void pack_bits(uint8_t *bytes, Py_ssize_t rows) {
    for (Py_ssize_t k = 0; k < rows; k += 8) {
        uint8_t bits = 0;
        for (Py_ssize_t b = 0; b < 8 && k + b < rows; b++) bits |= (uint8_t)(bytes[k + b] << b);
        bytes[k / 8] = bits;
    }
}

static PyObject *bytes_or_none(const void *data, Py_ssize_t n) {
    if (!data) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(data, n);
}

static PyObject *column_tuple(const Column *c, Py_ssize_t rows) {
    PyObject *name = PyUnicode_DecodeUTF8(c->name, c->name_len, "strict");
    PyObject *validity = c->nulls ? bytes_or_none(c->valid, (rows + 7) / 8) : (Py_INCREF(Py_None), Py_None);
    PyObject *values = NULL, *chars = NULL;
    if (c->kind == KIND_STRING) {
        values = bytes_or_none(c->offsets, (rows + 1) * (Py_ssize_t)sizeof(int32_t));
        chars = PyBytes_FromStringAndSize(c->chars ? c->chars : "", c->chars_len);
    } else {
        values = bytes_or_none(c->values, c->kind == KIND_BOOL ? (rows + 7) / 8 : rows * 8);
        chars = (Py_INCREF(Py_None), Py_None);
    }
    PyObject *result = NULL;
    if (name && validity && values && chars)
        result = Py_BuildValue("(OinOOO)", name, c->kind, c->nulls, validity, values, chars);
    Py_XDECREF(name);
    Py_XDECREF(validity);
    Py_XDECREF(values);
    Py_XDECREF(chars);
    return result;
}

static PyObject *read_columns(PyObject *module, PyObject *body) {
    (void)module;
    if (!PyBytes_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "read_columns() takes bytes");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(body);
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    if (size >= INT32_MAX) Py_RETURN_NONE;
    Reader r = {0};
    r.p = (const unsigned char *)data;
    r.end = r.p + size;
    int ok;
    PyThreadState *released = size >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    for (const char *q = data; (q = memchr(q, '{', (size_t)(data + size - q))) != NULL; q++) r.cap++;
    ok = read_body(&r);
    if (ok) {
        for (Py_ssize_t k = 0; k < r.ncolumns; k++) {
            Column *c = &r.columns[k];
            pad(c, r.rows);
            pack_bits(c->valid, r.rows);
            if (c->kind == KIND_BOOL) pack_bits(c->values, r.rows);
        }
    }
    if (released) PyEval_RestoreThread(released);
    if (!ok) {
        free_reader(&r);
        Py_RETURN_NONE;
    }
    PyObject *columns = PyList_New(r.ncolumns);
    for (Py_ssize_t k = 0; columns && k < r.ncolumns; k++) {
        PyObject *item = column_tuple(&r.columns[k], r.rows);
        if (!item) {
            Py_CLEAR(columns);
            break;
        }
        PyList_SET_ITEM(columns, k, item);
    }
    free_reader(&r);
    if (!columns) return NULL;
    PyObject *result = Py_BuildValue("(nN)", r.rows, columns);
    return result;
}

static PyMethodDef methods[] = {
    {"read_columns", read_columns, METH_O,
     "read_columns(body: bytes) -> (rows, [(name, kind, nulls, validity, values, chars)]) "
     "or None when the body is not {\"data\": [flat records]} read exactly as pyarrow.json "
     "reads it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "harvester._flatjson",
    .m_doc = "Native reader of flat records bodies.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__flatjson(void) {
    init_text_stop();
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c_locale) return PyErr_NoMemory();
    return PyModule_Create(&module);
}
