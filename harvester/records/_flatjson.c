/* A reader for the one shape nearly every records body has: {"data": [flat record, ...]}
 * (or the bare array of those records).
 *
 * A flat record is an object whose values are numbers, texts, booleans or null. The reader
 * builds one Arrow-layout column per field (validity bits, int64/float64 values, bits, or
 * int32 offsets and UTF-8 bytes) in one pass, without a Python object per value (and, for a
 * large body, without the GIL). It types a field as pyarrow.json does: integers → int64, any
 * number with a fraction or an exponent → float64 (integers beside it are converted), texts
 * → string, booleans → bool, only nulls → null.
 *
 * It refuses, by returning None, every body it does not read exactly as pyarrow.json would,
 * and the caller then uses pyarrow.json: anything but those two shapes, nested values, escapes
 * in texts, a field holding two kinds (numbers and texts, a boolean beside a number), a
 * repeated key, integers beyond 64 bits, numbers it would round differently, a text beyond
 * "date" that pyarrow.json may read as a time, a "date" not in the plain ISO-8601 form.
 * Refusing only costs time, so every doubt ends in a refusal. A malformed body is refused
 * too, never read past its end.
 *
 * Memory follows what the body holds: columns grow with the rows read, and a body whose
 * records hold more fields, or more records x fields, than the caller's budget is refused
 * (parse.py then refuses it too, by the same count: see _flatjson_shape.h).
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

#include "_flatjson_values.h"

/* KIND_TIME: the "date" field, int64 milliseconds since the epoch, UTC. KIND_BOOL: one byte a
 * row until the end, then an Arrow bitmap. */
enum { KIND_NULL = 0, KIND_INT = 1, KIND_FLOAT = 2, KIND_STRING = 3, KIND_TIME = 4, KIND_BOOL = 5 };

/* The bytes of body, or NULL with MemoryError. Built for the fuzzer (fuzz/), an exact-size copy
 * in *copy (which the caller frees): a bytes object ends with a NUL, so AddressSanitizer would
 * not report a read one byte past the body's end. */
static const char *body_bytes(PyObject *body, char **copy) {
    *copy = NULL;
#ifdef FLATJSON_EXACT_COPY
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    *copy = malloc(size ? (size_t)size : 1);
    if (!*copy) return (const char *)PyErr_NoMemory();
    memcpy(*copy, PyBytes_AS_STRING(body), (size_t)size);
    return *copy;
#else
    return PyBytes_AS_STRING(body);
#endif
}

#include "_flatjson_shape.h"

/* Rows every column has room for at first; each column then grows with the rows actually
 * read (doubling), never beyond the count of '{' in the body, an upper bound of the records. */
#define FIRST_ROWS 64

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    int kind;
    Py_ssize_t len;       /* rows filled so far */
    Py_ssize_t seen_row;  /* the last row that set this field: a repeated key */
    Py_ssize_t nulls;
    uint8_t *valid;       /* one byte a row until the end */
    void *values;         /* a row's int64 (ints, times), double, or byte (bools) */
    int32_t *offsets;     /* rows + 1 */
    char *chars;
    Py_ssize_t chars_len, chars_cap;
} Column;

typedef struct {
    const unsigned char *p, *end;
    Py_ssize_t max_rows;  /* an upper bound of the records: the count of '{' */
    Py_ssize_t row_cap;   /* rows every column has room for */
    Py_ssize_t max_fields, max_cells;
    Py_ssize_t rows;
    Column *columns;
    Py_ssize_t ncolumns, columns_cap;
    Py_ssize_t hint; /* the column the next key most likely names */
} Reader;

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
    /* The budget counts the envelope as one more object and one more name, as
     * scan_shape does, so that a body read here always passes parse.py's shape check. */
    if (n == r->max_fields || (r->rows + 2) * (n + 2) > r->max_cells) return NULL;
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
    c->valid = calloc((size_t)r->row_cap, 1);
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
            c->offsets = calloc((size_t)r->row_cap + 1, sizeof(int32_t));
            return c->offsets != NULL;
        }
        c->values = calloc((size_t)r->row_cap, kind == KIND_BOOL ? 1 : 8);
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
        if (!scan_text(&r->p, r->end, &s, &n)) return 0;
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
        if (!scan_number(&r->p, r->end, &is_int, &as_int, &as_float)) return 0;
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

/* A block of `rows` rows of `width` bytes grown to `cap` rows, the new ones zero. */
static int grow(void **block, Py_ssize_t rows, Py_ssize_t cap, size_t width) {
    if (!*block) return 1;
    char *grown = realloc(*block, (size_t)cap * width);
    if (!grown) return 0;
    memset(grown + (size_t)rows * width, 0, (size_t)(cap - rows) * width);
    *block = grown;
    return 1;
}

/* Room for one more row in every column: memory follows the rows actually read. */
static int make_room(Reader *r) {
    if (r->rows < r->row_cap) return 1;
    Py_ssize_t cap = r->row_cap ? 2 * r->row_cap : FIRST_ROWS;
    if (cap > r->max_rows) cap = r->max_rows;
    if (cap <= r->rows) return 0;
    for (Py_ssize_t k = 0; k < r->ncolumns; k++) {
        Column *c = &r->columns[k];
        size_t width = c->kind == KIND_BOOL ? 1 : 8;
        if (!grow((void **)&c->valid, r->row_cap, cap, 1) ||
            !grow(&c->values, r->row_cap, cap, width) ||
            !grow((void **)&c->offsets, r->row_cap + 1, cap + 1, sizeof(int32_t)))
            return 0;
    }
    r->row_cap = cap;
    return 1;
}

static int read_record(Reader *r) {
    if (!take(r, '{') || (r->rows + 2) * (r->ncolumns + 1) > r->max_cells || !make_room(r))
        return 0;
    if (take(r, '}')) goto done;
    do {
        if (!take(r, '"')) return 0;
        Column *c = expected_key(r);
        if (!c) {
            const char *name;
            Py_ssize_t len;
            if (!scan_text(&r->p, r->end, &name, &len)) return 0;
            c = column_named(r, name, len);
        }
        if (!c || !take(r, ':') || !read_value(r, c)) return 0;
    } while (take(r, ','));
    if (!take(r, '}')) return 0;
done:
    r->rows++;
    return 1;
}

/* The documented envelope, {"data": [records]}, or the records alone, [records] (parse.py
 * reads a bare array as the same records). */
static int read_body(Reader *r) {
    int enveloped = take(r, '{');
    if (enveloped) {
        const char *name;
        Py_ssize_t len;
        if (!take(r, '"') || !scan_text(&r->p, r->end, &name, &len) || len != 4 ||
            memcmp(name, "data", 4) != 0 || !take(r, ':'))
            return 0;
    }
    if (!take(r, '[')) return 0;
    if (!take(r, ']')) {
        do {
            if (!read_record(r)) return 0;
        } while (take(r, ','));
        if (!take(r, ']')) return 0;
    }
    if (enveloped && !take(r, '}')) return 0;
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
    PyObject *validity =
        c->nulls ? bytes_or_none(c->valid, (rows + 7) / 8) : (Py_INCREF(Py_None), Py_None);
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

/* The GIL is let go of while reading a body of release_gil_from bytes or more: the caller's
 * choice (harvester/records/limits.py says why), since only it knows where bodies are read. */
static PyObject *read_buffer(const char *data, Py_ssize_t size, Py_ssize_t max_fields,
                             Py_ssize_t max_cells, Py_ssize_t release_gil_from) {
    if (size >= INT32_MAX) Py_RETURN_NONE;
    Reader r = {0};
    r.max_fields = max_fields;
    r.max_cells = max_cells;
    r.p = (const unsigned char *)data;
    r.end = r.p + size;
    int ok;
    PyThreadState *released = size >= release_gil_from ? PyEval_SaveThread() : NULL;
    for (const char *q = data; (q = memchr(q, '{', (size_t)(data + size - q))) != NULL; q++)
        r.max_rows++;
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
    return Py_BuildValue("(nN)", r.rows, columns);
}

static PyObject *read_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "read_columns() takes bytes, max_fields, max_cells, release_gil_from");
        return NULL;
    }
    Py_ssize_t max_fields = PyLong_AsSsize_t(args[1]);
    if (max_fields == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_cells = PyLong_AsSsize_t(args[2]);
    if (max_cells == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t release_gil_from = PyLong_AsSsize_t(args[3]);
    if (release_gil_from == -1 && PyErr_Occurred()) return NULL;
    char *copy;
    const char *data = body_bytes(args[0], &copy);
    if (!data) return NULL;
    PyObject *result = read_buffer(data, PyBytes_GET_SIZE(args[0]), max_fields, max_cells,
                                   release_gil_from);
    free(copy);
    return result;
}

static PyMethodDef methods[] = {
    {"read_columns", (PyCFunction)(void (*)(void))read_columns, METH_FASTCALL,
     "read_columns(body: bytes, max_fields: int, max_cells: int, release_gil_from: int) -> "
     "(rows, [(name, kind, nulls, validity, values, chars)]) or None when the body is not "
     "{\"data\": [flat records]} or [flat records], read exactly as pyarrow.json reads the "
     "former, or its records hold more than max_fields fields, or (records + 1) x (fields + 1) "
     "> max_cells."},
    {"scan_shape", (PyCFunction)(void (*)(void))scan_shape, METH_FASTCALL,
     "scan_shape(body: bytes, max_depth: int, max_names: int, release_gil_from: int) -> "
     "(depth, objects, names): "
     "the deepest nesting of arrays and objects, the objects and the distinct key names, "
     "outside texts; the scan stops once depth > max_depth or names > max_names."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "harvester.records._flatjson",
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
