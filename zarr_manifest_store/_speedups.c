/* The compiled steps of a ManifestStore read: each has a Python twin that gives the
 * same answers (used when the package is built without a C compiler).
 *
 * Chunk keys to byte ranges (twin: store._ServedArray and ChunkManifest.get).
 * A Locator holds one array's manifest (its path table and grid-shaped index,
 * offset and length arrays, through the buffer protocol) and the spelling of
 * its chunk keys (a prefix such as "c/" and a one-character separator).
 * resolve(locators, key) finds the array that key names and returns the
 * chunk's (path, offset, length), or None whenever the key is anything else:
 * not canonical, outside the grid, a missing or inline chunk, no array's.
 * None means "not a reference": the store then answers the key the long way,
 * so this module decides nothing the Python code does not decide the same.
 *
 * Everything runs under the GIL and a Locator never changes after it is built,
 * so it needs no lock of its own.
 *
 * Cached bytes into a fresh array (twin: sources._preadv_nowait). read_nowait
 * reads a range of an open descriptor with preadv2(RWF_NOWAIT), straight into a
 * new uint8 numpy array: the file system copies it from the page cache, or
 * refuses at once when a byte is not there.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>

/* Reads this long or longer let other threads run while the page cache is copied. */
#define RELEASE_GIL_BYTES (64 * 1024)

#define MAX_DIMS 64

static PyObject *root;  /* "": the path of an array at the root */

typedef struct {
    PyObject_HEAD
    PyObject *prefix;   /* str: what every chunk key starts with ("c/", or "") */
    const char *prefix_utf8;
    Py_ssize_t prefix_len;
    char separator;     /* between the decimal coordinates: '/' or '.' */
    int ndim;
    PyObject *paths;    /* tuple of str: the path table */
    Py_buffer index;    /* uint32 row of the path table, or >= len(paths) */
    Py_buffer offsets;  /* uint64 */
    Py_buffer lengths;  /* unsigned, 1 to 8 bytes */
    int buffers;        /* how many of the three buffers are held */
} Locator;

/* Whether the buffer holds native unsigned integers of itemsize bytes. */
static int
is_native_unsigned(const Py_buffer *view, Py_ssize_t itemsize)
{
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '@' || *fmt == '=') {
        fmt++;
    }
#if PY_LITTLE_ENDIAN
    else if (*fmt == '<') {
        fmt++;
    }
#else
    else if (*fmt == '>' || *fmt == '!') {
        fmt++;
    }
#endif
    return fmt[0] != '\0' && fmt[1] == '\0' && strchr("BHILQ", fmt[0]) != NULL &&
           view->itemsize == itemsize;
}

/* Hold obj's buffer in view: native unsigned integers of itemsize bytes (0: any of
   1, 2, 4 or 8), shaped like the index (taken first). */
static int
take_buffer(Locator *self, PyObject *obj, Py_buffer *view, const char *name,
            Py_ssize_t itemsize)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_RECORDS_RO) < 0) {
        return -1;
    }
    self->buffers++;
    if (itemsize == 0 && (view->itemsize == 1 || view->itemsize == 2 ||
                          view->itemsize == 4 || view->itemsize == 8)) {
        itemsize = view->itemsize;
    }
    if (!is_native_unsigned(view, itemsize)) {
        PyErr_Format(PyExc_TypeError, "%s must be a native unsigned integer array", name);
        return -1;
    }
    if (view->ndim != self->index.ndim ||
        memcmp(view->shape, self->index.shape, sizeof(Py_ssize_t) * view->ndim) != 0) {
        PyErr_Format(PyExc_ValueError, "%s must have the shape of index", name);
        return -1;
    }
    return 0;
}

static void
Locator_dealloc(Locator *self)
{
    Py_buffer *views[3] = {&self->index, &self->offsets, &self->lengths};
    for (int i = 0; i < self->buffers; i++) {
        PyBuffer_Release(views[i]);
    }
    Py_XDECREF(self->prefix);
    Py_XDECREF(self->paths);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Locator_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"prefix", "separator", "paths", "index", "offsets", "lengths",
                               NULL};
    PyObject *prefix, *separator, *paths, *index, *offsets, *lengths;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UUO!OOO:Locator", keywords, &prefix,
                                     &separator, &PyTuple_Type, &paths, &index, &offsets,
                                     &lengths)) {
        return NULL;
    }
    Locator *self = (Locator *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(prefix);
    self->prefix = prefix;
    Py_INCREF(paths);
    self->paths = paths;
    self->prefix_utf8 = PyUnicode_AsUTF8AndSize(prefix, &self->prefix_len);
    if (self->prefix_utf8 == NULL) {
        goto fail;
    }
    Py_ssize_t sep_len;
    const char *sep = PyUnicode_AsUTF8AndSize(separator, &sep_len);
    if (sep == NULL) {
        goto fail;
    }
    if (sep_len != 1 || (unsigned char)sep[0] >= 0x80 || (sep[0] >= '0' && sep[0] <= '9')) {
        PyErr_SetString(PyExc_ValueError, "separator must be one ASCII character, not a digit");
        goto fail;
    }
    self->separator = sep[0];
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(paths); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(paths, i))) {
            PyErr_SetString(PyExc_TypeError, "paths must be a tuple of str");
            goto fail;
        }
    }
    if (take_buffer(self, index, &self->index, "index", 4) < 0) {
        goto fail;
    }
    if (self->index.ndim < 1 || self->index.ndim > MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "index must have 1 to %d dimensions", MAX_DIMS);
        goto fail;
    }
    self->ndim = self->index.ndim;
    if (take_buffer(self, offsets, &self->offsets, "offsets", 8) < 0 ||
        take_buffer(self, lengths, &self->lengths, "lengths", 0) < 0) {
        goto fail;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static inline const char *
cell(const Py_buffer *view, const Py_ssize_t *coords, int ndim)
{
    const char *p = view->buf;
    for (int d = 0; d < ndim; d++) {
        p += coords[d] * view->strides[d];
    }
    return p;
}

static uint64_t
unsigned_at(const Py_buffer *view, const char *p)
{
    switch (view->itemsize) {
    case 1: return *(const uint8_t *)p;
    case 2: return *(const uint16_t *)p;
    case 4: return *(const uint32_t *)p;
    default: return *(const uint64_t *)p;
    }
}

/* The reference chunk key s[0:n] names in self, or None. */
static PyObject *
locate(const Locator *self, const char *s, Py_ssize_t n)
{
    Py_ssize_t coords[MAX_DIMS];
    if (n < self->prefix_len || memcmp(s, self->prefix_utf8, self->prefix_len) != 0) {
        Py_RETURN_NONE;
    }
    const char *p = s + self->prefix_len, *end = s + n;
    for (int d = 0; d < self->ndim; d++) {
        if (d > 0) {
            if (p == end || *p != self->separator) {
                Py_RETURN_NONE;
            }
            p++;
        }
        const char *digits = p;
        uint64_t value = 0, extent = (uint64_t)self->index.shape[d];
        while (p < end && *p >= '0' && *p <= '9') {
            if (value > (UINT64_MAX - 9) / 10) {
                Py_RETURN_NONE;
            }
            value = value * 10 + (uint64_t)(*p - '0');
            if (value >= extent) {  /* outside the grid */
                Py_RETURN_NONE;
            }
            p++;
        }
        if (p == digits || (*digits == '0' && p - digits > 1)) {  /* empty, or "01" */
            Py_RETURN_NONE;
        }
        coords[d] = (Py_ssize_t)value;
    }
    if (p != end) {
        Py_RETURN_NONE;
    }
    uint64_t row = *(const uint32_t *)cell(&self->index, coords, self->ndim);
    if (row >= (uint64_t)PyTuple_GET_SIZE(self->paths)) {  /* missing, or inline */
        Py_RETURN_NONE;
    }
    PyObject *offset = PyLong_FromUnsignedLongLong(
        *(const uint64_t *)cell(&self->offsets, coords, self->ndim));
    PyObject *length = PyLong_FromUnsignedLongLong(
        unsigned_at(&self->lengths, cell(&self->lengths, coords, self->ndim)));
    if (offset == NULL || length == NULL) {
        Py_XDECREF(offset);
        Py_XDECREF(length);
        return NULL;
    }
    PyObject *ref = PyTuple_New(3);
    if (ref == NULL) {
        Py_DECREF(offset);
        Py_DECREF(length);
        return NULL;
    }
    PyObject *path = PyTuple_GET_ITEM(self->paths, (Py_ssize_t)row);
    Py_INCREF(path);
    PyTuple_SET_ITEM(ref, 0, path);
    PyTuple_SET_ITEM(ref, 1, offset);
    PyTuple_SET_ITEM(ref, 2, length);
    return ref;
}

static PyTypeObject LocatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zarr_manifest_store._speedups.Locator",
    .tp_doc = PyDoc_STR(
        "Locator(prefix, separator, paths, index, offsets, lengths): one array's chunk "
        "keys to byte ranges"),
    .tp_basicsize = sizeof(Locator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Locator_new,
    .tp_dealloc = (destructor)Locator_dealloc,
};

/* resolve(locators, key): (path, offset, length) of the chunk key names, or None. */
static PyObject *
resolve(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "resolve(locators: dict, key: str)");
        return NULL;
    }
    PyObject *locators = args[0], *key = args[1];
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(key, &n);
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return NULL;
        }
        PyErr_Clear();  /* a lone surrogate: no chunk key has one, Python answers it */
        Py_RETURN_NONE;
    }
    /* The array is the first node path that prefixes key at a '/' (the root first);
       arrays have no children, so at most one can match. */
    Py_ssize_t start = 0;
    PyObject *found = PyDict_GetItemWithError(locators, root);
    for (Py_ssize_t i = 0; found == NULL && !PyErr_Occurred() && i < n; i++) {
        if (s[i] == '/') {
            PyObject *path = PyUnicode_DecodeUTF8(s, i, NULL);
            if (path == NULL) {
                return NULL;
            }
            found = PyDict_GetItemWithError(locators, path);
            Py_DECREF(path);
            start = i + 1;
        }
    }
    if (found == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (!PyObject_TypeCheck(found, &LocatorType)) {
        PyErr_SetString(PyExc_TypeError, "locators must map array paths to Locator");
        return NULL;
    }
    return locate((const Locator *)found, s + start, n - start);
}

/* read_nowait(fd, offset, length): a new uint8 array of the bytes, if every one is in the
   page cache; None when one is not (EAGAIN) or the file ends before; OSError otherwise
   (EOPNOTSUPP where the file system cannot tell). */
static PyObject *
read_nowait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_nowait(fd, offset, length)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    long long offset = PyLong_AsLongLong(args[1]);
    Py_ssize_t length = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT32_MAX || offset < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "read_nowait: fd, offset and length must be >= 0");
        return NULL;
    }
#ifdef RWF_NOWAIT
    npy_intp shape[1] = {length};
    PyObject *array = PyArray_SimpleNew(1, shape, NPY_UINT8);
    if (array == NULL) {
        return NULL;
    }
    struct iovec iov = {PyArray_DATA((PyArrayObject *)array), (size_t)length};
    ssize_t got;
    if (length >= RELEASE_GIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        got = preadv2((int)fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
        Py_END_ALLOW_THREADS
    }
    else {
        got = preadv2((int)fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    }
    if (got == length) {
        return array;
    }
    int error = errno;
    Py_DECREF(array);
    if (got >= 0 || error == EAGAIN) {
        Py_RETURN_NONE;
    }
    errno = error;
#else
    errno = EOPNOTSUPP;
#endif
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyMethodDef methods[] = {
    {"resolve", (PyCFunction)(void (*)(void))resolve, METH_FASTCALL,
     PyDoc_STR("resolve(locators, key): (path, offset, length) of the chunk key names, "
               "or None")},
    {"read_nowait", (PyCFunction)(void (*)(void))read_nowait, METH_FASTCALL,
     PyDoc_STR("read_nowait(fd, offset, length): a new uint8 array of the bytes if all are "
               "in the page cache, else None")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zarr_manifest_store._speedups",
    .m_doc = PyDoc_STR("The compiled steps of a ManifestStore read: chunk keys to byte ranges, "
                       "cached bytes into a fresh array."),
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    import_array();
    if (PyType_Ready(&LocatorType) < 0) {
        return NULL;
    }
    if (root == NULL && (root = PyUnicode_FromString("")) == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Locator", (PyObject *)&LocatorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
