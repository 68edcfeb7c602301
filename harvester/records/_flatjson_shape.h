/* The shape of a JSON body, scanned without recursing, before any parser that recurses or
 * builds one column per field sees it (parse.py): how deep arrays and objects nest, how many
 * objects there are and how many distinct key names. Objects x names bounds the cells of the
 * table a columnar reader builds: the columns sharing a name sit under distinct parents, and
 * every object is the parent of at most one of them. Counted outside texts, a text running to
 * the end of the body when it has no closing quote; a name is its raw bytes, so "a" and
 * "\u0061" count twice (the bound stays a bound). Included once, by _flatjson.c.
 */
#ifndef HARVESTER_FLATJSON_SHAPE_H
#define HARVESTER_FLATJSON_SHAPE_H

typedef struct {
    const unsigned char **slots; /* each name's first byte after its quote, or NULL */
    Py_ssize_t *lens;
    size_t mask;
    Py_ssize_t count;
} Names;

/* Adds the name [s, s + n) unless present. */
static void add_name(Names *names, const unsigned char *s, Py_ssize_t n) {
    uint64_t hash = 14695981039346656037u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) hash = (hash ^ s[i]) * 1099511628211u;
    for (size_t at = (size_t)hash & names->mask;; at = (at + 1) & names->mask) {
        if (!names->slots[at]) {
            names->slots[at] = s;
            names->lens[at] = n;
            names->count++;
            return;
        }
        if (names->lens[at] == n && memcmp(names->slots[at], s, (size_t)n) == 0) return;
    }
}

static PyObject *scan_shape(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_shape() takes bytes, max_depth, max_names, release_gil_from");
        return NULL;
    }
    Py_ssize_t max_depth = PyLong_AsSsize_t(args[1]);
    if (max_depth == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_names = PyLong_AsSsize_t(args[2]);
    if (max_names == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t release_gil_from = PyLong_AsSsize_t(args[3]);
    if (release_gil_from == -1 && PyErr_Occurred()) return NULL;
    if (max_names < 0 || max_names > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "scan_shape(): max_names out of range");
        return NULL;
    }
    /* At most max_names + 1 names are ever added: the table stays at most half full. */
    size_t slots = 2;
    while (slots < 2 * (size_t)(max_names + 1)) slots *= 2;
    Names names = {calloc(slots, sizeof(*names.slots)), calloc(slots, sizeof(*names.lens)),
                   slots - 1, 0};
    if (!names.slots || !names.lens) {
        free(names.slots);
        free(names.lens);
        return PyErr_NoMemory();
    }
    char *copy;
    const unsigned char *p = (const unsigned char *)body_bytes(args[0], &copy);
    if (!p) {
        free(names.slots);
        free(names.lens);
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    const unsigned char *end = p + size;
    Py_ssize_t depth = 0, deepest = 0, objects = 0;
    PyThreadState *released = size >= release_gil_from ? PyEval_SaveThread() : NULL;
    while (p < end && deepest <= max_depth && names.count <= max_names) {
        unsigned char c = *p++;
        if (c == '"') {
            const unsigned char *text = p;
            int closed = 0;
            while (p < end) {
                unsigned char t = *p++;
                if (t == '"') {
                    closed = 1;
                    break;
                }
                if (t == '\\' && p < end) p++;
            }
            if (!closed) break;
            const unsigned char *q = p;
            while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) q++;
            if (q < end && *q == ':') add_name(&names, text, p - 1 - text);
        } else if (c == '[' || c == '{') {
            objects += c == '{';
            if (++depth > deepest) deepest = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    if (released) PyEval_RestoreThread(released);
    free(names.slots);
    free(names.lens);
    free(copy);
    return Py_BuildValue("(nnn)", deepest, objects, names.count);
}

#endif
