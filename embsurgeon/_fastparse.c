/* Optional compiled fast path for the word-vector readers (embsurgeon/io/text.py and
 * embsurgeon/io/word2vec_bin.py).  Python keeps every decision about errors, filters, NaN/Inf,
 * encodings and line numbers; this module only does the two inner loops numpy cannot do fast:
 *
 *   parse_text(data, start, dim, out) -> (tokens, rows, stop, nonfinite)
 *   scan_records(data, start, end, dim, max_records, max_token, out)
 *       -> (tokens, rows, stop, bad, nonfinite)
 *
 * Both write float32 rows into `out` (any writable C-contiguous buffer, e.g. a numpy float32
 * array), never past its last whole row (the row after the last one returned may hold a
 * partly parsed line: scratch), and return the rows' tokens joined by b"\n" (tokens
 * never hold a newline), so Python decodes a chunk's tokens in one call.
 *
 * Only the CPython API and the buffer protocol are used (no numpy headers), so building needs
 * nothing but a C compiler; without one, the pure-numpy readers are used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

/* The exact fast path below relies on double arithmetic being done in double (SSE2, ARM);
 * x87 extended precision would round twice, so there every number takes the slow path. */
#if defined(FLT_EVAL_METHOD) && (FLT_EVAL_METHOD == 0 || FLT_EVAL_METHOD == 1)
#define EXACT_DOUBLE 1
#else
#define EXACT_DOUBLE 0
#endif

/* 10^0 .. 10^22 are exactly representable as doubles. */
static const double POW10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Longest number text handed to Python's own parser; longer fields go to the Python path. */
#define HARD_FIELD 256

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The bytes Python's bytes.split() treats as whitespace, which the line-exact path splits on. */
static inline int is_ws(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

enum { NUM_OK = 0, NUM_BAD = 1, NUM_HARD = 2 };

/* Parse one decimal number in [p, end) that must stop at a space, a line end or `end`.
 * Accepts the subset of Python float() syntax real files use: [+-]digits[.digits][e[+-]digits]
 * (either digit run may be empty, not both).  NUM_OK: *value holds the exactly rounded double.
 * NUM_HARD: the syntax is fine but the value needs a correctly rounded general conversion
 * (more than 19 significant digits, a mantissa above 2^53 or a large exponent); *next is set.
 * NUM_BAD: anything else (nan, inf, 1_0, 1,5, garbage); Python decides what it is. */
static int parse_number_careful(const unsigned char *p, const unsigned char *end,
                                double *value, const unsigned char **next);

/* The common case first: at most 19 digits in all, so the mantissa cannot overflow and
 * leading zeros need no special care (they add nothing to it). */
static inline int parse_number(const unsigned char *p, const unsigned char *end, double *value,
                               const unsigned char **next) {
    const unsigned char *start = p, *digits_at;
    int negative = 0, has_dot = 0;
    Py_ssize_t frac = 0;
    uint64_t mantissa = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        negative = *p == '-';
        p++;
    }
    digits_at = p;
    while (p < end && is_digit(*p))
        mantissa = mantissa * 10 + (uint64_t)(*p++ - '0');
    if (p < end && *p == '.') {
        const unsigned char *f = ++p;
        has_dot = 1;
        while (p < end && is_digit(*p))
            mantissa = mantissa * 10 + (uint64_t)(*p++ - '0');
        frac = p - f;
    }
    Py_ssize_t digits = p - digits_at - has_dot;
    /* More than 19 digits may have overflowed; an exponent or a big mantissa needs care. */
    if (!EXACT_DOUBLE || digits > 19 || (p < end && (*p == 'e' || *p == 'E')) ||
        mantissa > ((uint64_t)1 << 53) || frac > 22)
        return parse_number_careful(start, end, value, next);
    if (!digits || (p < end && !is_ws(*p)))
        return NUM_BAD;
    *next = p;
    /* Clinger's fast path (see parse_number_careful): exact operands, one rounding. */
    double v = frac ? (double)mantissa / POW10[frac] : (double)mantissa;
    *value = negative ? -v : v;
    return NUM_OK;
}

static int parse_number_careful(const unsigned char *p, const unsigned char *end,
                                double *value, const unsigned char **next) {
    int negative = 0, significant = 0, truncated = 0;
    Py_ssize_t digits = 0; /* a field may be absurdly long: no int overflow */
    uint64_t mantissa = 0;
    int64_t exp10 = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        negative = *p == '-';
        p++;
    }
    for (; p < end && is_digit(*p); p++, digits++) {
        if (significant < 19) {
            if (mantissa || *p != '0') {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                significant++;
            }
        } else {
            truncated = 1;
            exp10++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        for (; p < end && is_digit(*p); p++, digits++) {
            if (significant < 19) {
                if (mantissa || *p != '0') {
                    mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                    significant++;
                }
                exp10--;
            } else {
                truncated = 1;
            }
        }
    }
    if (!digits)
        return NUM_BAD;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int exp_negative = 0, exp_digits = 0;
        int64_t e = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            exp_negative = *p == '-';
            p++;
        }
        for (; p < end && is_digit(*p); p++, exp_digits++)
            if (e < 100000) /* saturate: such exponents go to the slow path anyway */
                e = e * 10 + (*p - '0');
        if (!exp_digits)
            return NUM_BAD;
        exp10 += exp_negative ? -e : e;
    }
    if (p < end && !is_ws(*p))
        return NUM_BAD; /* "1.5x", "1,5", "1_0": not ours to judge */
    *next = p;
    if (!EXACT_DOUBLE || truncated || mantissa > ((uint64_t)1 << 53) || exp10 < -22 ||
        exp10 > 22)
        return mantissa == 0 && !truncated ? (*value = negative ? -0.0 : 0.0, NUM_OK)
                                           : NUM_HARD;
    /* Clinger's fast path: both operands are exact doubles, so one IEEE operation gives the
     * correctly rounded result, the same double Python's float() returns. */
    double v = (double)mantissa;
    v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
    *value = negative ? -v : v;
    return NUM_OK;
}

/* Python's own correctly rounded, locale-independent parser for the rare hard number; the
 * caller holds the GIL.  Returns 0 on success. */
static int parse_hard(const unsigned char *p, const unsigned char *stop, double *value) {
    char text[HARD_FIELD + 1];
    Py_ssize_t n = stop - p;
    char *tail = NULL;
    if (n > HARD_FIELD)
        return -1;
    memcpy(text, p, (size_t)n);
    text[n] = '\0';
    /* NULL overflow_exception: out-of-range values become +-inf, as float() gives. */
    *value = PyOS_string_to_double(text, &tail, NULL);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return tail == text + n ? 0 : -1;
}

/* Growing list of (offset, length) pairs for the tokens, filled without the GIL. */
typedef struct {
    Py_ssize_t *pairs;
    Py_ssize_t total; /* token bytes, for the joined result */
} Spans;

static PyObject *join_tokens(const unsigned char *data, const Spans *spans, Py_ssize_t rows) {
    Py_ssize_t size = rows ? spans->total + rows - 1 : 0;
    PyObject *blob = PyBytes_FromStringAndSize(NULL, size);
    if (!blob)
        return NULL;
    char *w = PyBytes_AS_STRING(blob);
    for (Py_ssize_t i = 0; i < rows; i++) {
        Py_ssize_t at = spans->pairs[2 * i], len = spans->pairs[2 * i + 1];
        if (i)
            *w++ = '\n';
        memcpy(w, data + at, (size_t)len);
        w += len;
    }
    return blob;
}

/* No NaN or Inf in a row of float32 bits: saves the caller a pass over the matrix. */
static inline int row_finite(const unsigned char *row, size_t dim) {
    uint32_t any = 0;
    for (size_t j = 0; j < dim; j++) {
        uint32_t bits;
        memcpy(&bits, row + 4 * j, 4);
        any |= (bits & 0x7f800000u) == 0x7f800000u; /* all-ones exponent */
    }
    return !any;
}

/* Resolve the output buffer: how many whole rows of `dim` float32 it holds. */
static int out_rows(Py_buffer *out, Py_ssize_t dim, Py_ssize_t *rows) {
    if (dim < 1 || dim > PY_SSIZE_T_MAX / 4 / 1024) {
        PyErr_SetString(PyExc_ValueError, "dim must be a positive, sane integer");
        return -1;
    }
    *rows = out->len / (dim * 4);
    return 0;
}

PyDoc_STRVAR(parse_text_doc,
"parse_text(data, start, dim, out) -> (tokens, rows, stop, nonfinite)\n\n"
"Parse whole lines 'token v1 ... vD' of `data` from byte `start` into the float32 buffer\n"
"`out`, one row per line. Stops at the end of `data`, when `out` is full, or at the first\n"
"line it does not take (a blank line, a token with whitespace other than its one separator,\n"
"a field that is not a plain decimal number, a wrong field count); `stop` is that line's\n"
"offset, so the caller reads it with its line-exact path. `tokens` is the rows' tokens\n"
"joined by b'\\n'; `nonfinite` the first row holding an infinite value, or -1 (the caller\n"
"then skips its own check). The GIL is released while parsing.");

static PyObject *parse_text(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t start, dim, capacity;
    if (!PyArg_ParseTuple(args, "y*nnw*", &in, &start, &dim, &out))
        return NULL;
    PyObject *result = NULL;
    Spans spans = {NULL, 0};
    if (out_rows(&out, dim, &capacity) < 0)
        goto done;
    if (start < 0 || start > in.len) {
        PyErr_SetString(PyExc_ValueError, "start is outside the data");
        goto done;
    }
    if (capacity && !(spans.pairs = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)capacity))) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *data = in.buf, *end = data + in.len, *p = data + start;
    float *rowp = out.buf;
    Py_ssize_t rows = 0, nonfinite = -1;
    PyThreadState *released = PyEval_SaveThread();
    while (p < end && rows < capacity) {
        const unsigned char *line = p, *tok = p;
        while (p < end && !is_ws(*p))
            p++;
        /* The token must be non-empty and end at a single space. */
        if (p == tok || p >= end || *p != ' ')
            goto unusual;
        Py_ssize_t tok_len = p - tok;
        p++;
        for (Py_ssize_t j = 0; j < dim; j++) {
            double v;
            const unsigned char *next = NULL;
            if (j && (p >= end || *p != ' '))
                goto unusual;
            p += j != 0;
            int kind = parse_number(p, end, &v, &next);
            if (kind == NUM_BAD)
                goto unusual;
            if (kind == NUM_HARD) {
                /* Rare: take the GIL back for the rest of this call, for Python's parser. */
                if (released) {
                    PyEval_RestoreThread(released);
                    released = NULL;
                }
                if (parse_hard(p, next, &v) < 0)
                    goto unusual;
            }
            float f = (float)v; /* the same double -> float32 rounding numpy and gensim do */
            if (nonfinite < 0 && !(f <= FLT_MAX && f >= -FLT_MAX)) /* e.g. 1e39 */
                nonfinite = rows;
            rowp[j] = f;
            p = next;
        }
        /* Trailing whitespace (fastText writes a space, Windows a CR) then the line end. */
        while (p < end && *p != '\n' && is_ws(*p))
            p++;
        if (p < end && *p != '\n')
            goto unusual; /* more fields: perhaps a token with spaces */
        if (p < end)
            p++;
        spans.pairs[2 * rows] = tok - data;
        spans.pairs[2 * rows + 1] = tok_len;
        spans.total += tok_len;
        rows++;
        rowp += dim;
        continue;
    unusual:
        p = line;
        break;
    }
    if (released)
        PyEval_RestoreThread(released);
    PyObject *blob = join_tokens(data, &spans, rows);
    if (blob)
        result = Py_BuildValue("Nnnn", blob, rows, (Py_ssize_t)(p - data), nonfinite);
done:
    PyMem_Free(spans.pairs);
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(scan_records_doc,
"scan_records(data, start, end, dim, max_records, max_token, out)\n"
"    -> (tokens, rows, stop, bad, nonfinite)\n\n"
"Walk word2vec binary records 'token SPACE <dim float32>' in data[start:end], skipping\n"
"newlines before each token, copying each vector into row i of `out`. Stops after\n"
"`max_records`, when `out` is full, at a record that does not end before `end` (`stop` is\n"
"where it begins; read more and call again), or at a bad token: `bad` is then that record's\n"
"index and its token (empty, over `max_token` bytes or holding a newline) is the last of\n"
"`tokens`; otherwise `bad` is -1. `nonfinite` is the first row holding NaN or Inf, or -1.\n"
"The GIL is released while scanning.");

static PyObject *scan_records(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t start, stop_at, dim, max_records, max_token, capacity;
    if (!PyArg_ParseTuple(args, "y*nnnnnw*", &in, &start, &stop_at, &dim, &max_records,
                          &max_token, &out))
        return NULL;
    PyObject *result = NULL;
    Spans spans = {NULL, 0};
    if (out_rows(&out, dim, &capacity) < 0)
        goto done;
    if (start < 0 || stop_at < start || stop_at > in.len) {
        PyErr_SetString(PyExc_ValueError, "start/end are outside the data");
        goto done;
    }
    if (max_records < capacity)
        capacity = max_records < 0 ? 0 : max_records;
    /* One more span than rows, for a bad token reported back. */
    if (!(spans.pairs = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * ((size_t)capacity + 1)))) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *data = in.buf, *end = data + stop_at, *p = data + start;
    const size_t nbytes = (size_t)dim * 4;
    unsigned char *rowp = out.buf;
    Py_ssize_t rows = 0, bad = -1, nonfinite = -1;
    Py_BEGIN_ALLOW_THREADS
    while (rows < capacity) {
        const unsigned char *record = p, *tok;
        while (p < end && *p == '\n')
            p++;
        tok = p;
        /* The same order of checks as the numpy path: a record that does not end before
         * `end` waits for more data (the caller decides when that is an error), then the
         * token is checked. */
        const unsigned char *space = memchr(record, ' ', (size_t)(end - record));
        if (!space || (size_t)(end - space - 1) < nbytes) {
            p = record;
            break;
        }
        if (space == tok || space - tok > max_token || memchr(tok, '\n', (size_t)(space - tok))) {
            /* Empty, too long or holding a newline: the record boundaries are off. */
            spans.pairs[2 * rows] = tok - data;
            spans.pairs[2 * rows + 1] = space > tok ? space - tok : 0;
            bad = rows;
            p = record;
            break;
        }
        memcpy(rowp, space + 1, nbytes); /* little-endian float32 on disk and (checked) here */
        if (nonfinite < 0 && !row_finite(rowp, (size_t)dim))
            nonfinite = rows;
        rowp += nbytes;
        spans.pairs[2 * rows] = tok - data;
        spans.pairs[2 * rows + 1] = space - tok;
        spans.total += space - tok;
        rows++;
        p = space + 1 + nbytes;
    }
    Py_END_ALLOW_THREADS
    /* A bad token goes back as the last of the tokens, for the error message. */
    Py_ssize_t listed = rows;
    if (bad >= 0) {
        spans.total += spans.pairs[2 * rows + 1];
        listed++;
    }
    PyObject *blob = join_tokens(data, &spans, listed);
    if (blob)
        result = Py_BuildValue("Nnnnn", blob, rows, (Py_ssize_t)(p - data), bad, nonfinite);
done:
    PyMem_Free(spans.pairs);
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_text", parse_text, METH_VARARGS, parse_text_doc},
    {"scan_records", scan_records, METH_VARARGS, scan_records_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "embsurgeon._fastparse",
    "Compiled inner loops for the word-vector readers; see embsurgeon/io/text.py.", -1, methods,
};

PyMODINIT_FUNC PyInit__fastparse(void) {
    /* The binary scanner copies little-endian float32 bytes as they are. */
    const uint32_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "big-endian machine: using the numpy readers");
        return NULL;
    }
    return PyModule_Create(&module);
}
