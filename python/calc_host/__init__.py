"""Host calc plugins from Python: shared libraries written in C, C++ or Rust against
calc_plugin.h, loaded at run time through libcalc_host's C API, reloaded and unloaded while
the program runs.

    >>> import calc_host
    >>> host = calc_host.Host()
    >>> host.load_dir("plugins")
    >>> host.eval("2 ^ 10 - max(3, 4) / 2")
    1022.0
    >>> add = host.op("+")
    >>> add(2, 3)
    5.0
    >>> expr = host.compile("x * y + 1", "x", "y")
    >>> out = expr.eval(xs, ys)          # numpy float64 arrays, read in place

Why cffi (in ABI mode) rather than PyO3: nothing is compiled when the package installs, so
``pip install`` needs no Rust or C toolchain and the same package works with any
libcalc_host of the same C API; the C API is the one contract every host shares (C, Go,
Python), so Python tests it as C programs see it; and numpy arrays cross it without copying
(``ffi.from_buffer``), which is where the time goes. A PyO3 module would skip the C API and
call the Rust host directly, saving a few hundred nanoseconds a scalar call, at the price of
a Rust build at install and a second binding to keep in step.

The library is found through, in order: the ``CALC_HOST_LIB`` environment variable (a
path to libcalc_host.so), the system's library search (an installed libcalc_host), and
this repository's ``target/debug`` (``cargo build -p calc-host-capi``).

Errors are raised as CalcError (``status``, ``message``, ``row``). They come from the C
API's ``_err`` functions, which hand each failure over as an object: no thread-local state
is read across two calls.
"""

import ctypes.util
import os
import threading
from pathlib import Path

from cffi import FFI

from ._cdef import CDEF

__all__ = ["Host", "Op", "Expr", "CalcError", "version"]

ffi = FFI()
ffi.cdef(CDEF)


def _library_path():
    explicit = os.environ.get("CALC_HOST_LIB")
    if explicit:
        return explicit
    found = ctypes.util.find_library("calc_host")
    if found:
        return found
    return str(Path(__file__).resolve().parents[2] / "target" / "debug" / "libcalc_host.so")


try:
    _lib = ffi.dlopen(_library_path())
except OSError as e:  # pragma: no cover - depends on the machine
    raise ImportError(
        f"calc_host: cannot open libcalc_host ({e}); build it with "
        "`cargo build -p calc-host-capi` or set CALC_HOST_LIB"
    ) from None

# The statuses (calc_plugin.h, calc_host.h): STATUS_OK, STATUS_ERROR, ..., STATUS_UNTRUSTED.
for _name in dir(_lib):
    if _name.startswith("CALC_STATUS_"):
        globals()[_name[len("CALC_") :]] = getattr(_lib, _name)
STATUS_OK = _lib.CALC_STATUS_OK
STATUS_INVALID_ARGUMENT = _lib.CALC_STATUS_INVALID_ARGUMENT


class CalcError(Exception):
    """A failed call: its calc status, one line naming what failed and why, and for a batch
    evaluation the first failing row (else -1)."""

    def __init__(self, status, message, row=-1):
        super().__init__(message)
        self.status = status
        self.message = message
        self.row = row


def _text(p):
    return ffi.string(p).decode("utf-8", "replace") if p != ffi.NULL else ""


def _check(status, err, row=-1):
    """Raises the failure of an `_err` call, freeing its error object."""
    if status == STATUS_OK:
        return
    message = ""
    if err[0] != ffi.NULL:
        message = _text(_lib.calc_error_message(err[0]))
        _lib.calc_error_free(err[0])
    raise CalcError(status, message or _text(_lib.calc_status_describe(status)), row)


_scratch = threading.local()


def _cells():
    """This thread's result, error and operand cells, made once: allocating them on every
    call was most of a scalar call's cost."""
    cells = getattr(_scratch, "cells", None)
    if cells is None:
        cells = _scratch.cells = (
            ffi.new("double *"),
            ffi.new("calc_error_t **"),
            ffi.new("double[8]"),
        )
    return cells


def version():
    """The version of the libcalc_host in use."""
    return _text(_lib.calc_host_version())


class _RWLock:
    """Shared for the C API's [thread-safe] calls, exclusive for its [exclusive] ones."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def shared(self):
        return _Held(self, False)

    def exclusive(self):
        return _Held(self, True)


class _Held:
    def __init__(self, lock, exclusive):
        self.lock, self.exclusive = lock, exclusive

    def __enter__(self):
        lock = self.lock
        with lock._cond:
            if self.exclusive:
                lock._cond.wait_for(lambda: not lock._writer and lock._readers == 0)
                lock._writer = True
            else:
                lock._cond.wait_for(lambda: not lock._writer)
                lock._readers += 1

    def __exit__(self, *exc):
        lock = self.lock
        with lock._cond:
            if self.exclusive:
                lock._writer = False
            else:
                lock._readers -= 1
            lock._cond.notify_all()


class Host:
    """Loaded plugins. Safe to share between threads: loading, reloading and polling take it
    exclusively, evaluating, calling and listing run concurrently (without the GIL)."""

    def __init__(self):
        self._lock = _RWLock()
        out = ffi.new("calc_host_t **")
        err = ffi.new("calc_error_t **")
        _check(_lib.calc_host_new_err(out, err), err)
        self._h = out[0]
        self._seen_events = 0

    def close(self):
        """Shuts every plugin down and frees the host (Ops and Exprs keep their plugins until
        they are closed). Calling it again does nothing."""
        if getattr(self, "_h", None) is None:
            return
        with self._lock.exclusive():
            if self._h is not None:
                _lib.calc_host_free(self._h)
                self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _exclusive_call(self, fn, *args):
        err = ffi.new("calc_error_t **")
        with self._lock.exclusive():
            _check(fn(self._h, *args, err), err)

    def load_dir(self, directory):
        """Loads every plugin library in the directory; returns how many loaded. A file that
        fails does not raise (see failures())."""
        n = ffi.new("size_t *")
        self._exclusive_call(_lib.calc_host_load_dir_err, os.fsencode(directory), n)
        return n[0]

    def load_file(self, path):
        """Loads one plugin library."""
        self._exclusive_call(_lib.calc_host_load_file_err, os.fsencode(path))

    def load_config(self, path):
        """Reads a calc configuration file (docs/CONFIG.md: settings, rollouts, isolation,
        trust), for plugins loaded afterwards."""
        self._exclusive_call(_lib.calc_host_load_config_err, os.fsencode(path))

    def set_plugin_config(self, plugin, key, value):
        """Sets a configuration value of a plugin, for plugins loaded afterwards."""
        self._exclusive_call(
            _lib.calc_host_set_plugin_config_err, plugin.encode(), key.encode(), value.encode()
        )

    def eval(self, expression):
        """Parses and evaluates an expression."""
        out, err, _ = _cells()
        err[0] = ffi.NULL
        with self._lock.shared():
            _check(_lib.calc_host_eval_err(self._h, expression.encode(), out, err), err)
        return out[0]

    def call(self, operation, *args):
        """Calls an operation by name ("add") or infix symbol ("+")."""
        out, err, operands = _cells()
        err[0] = ffi.NULL
        if len(args) <= 8:
            operands[0 : len(args)] = args
            values = operands
        else:
            values = ffi.new("double[]", [float(a) for a in args])
        with self._lock.shared():
            _check(
                _lib.calc_host_call_err(
                    self._h, operation.encode(), values, len(args), out, err
                ),
                err,
            )
        return out[0]

    def op(self, operation):
        """Resolves an operation once, for many calls; it follows hot reloads."""
        out = ffi.new("calc_op_t **")
        err = ffi.new("calc_error_t **")
        with self._lock.shared():
            _check(_lib.calc_op_new_err(self._h, operation.encode(), out, err), err)
        return Op(out[0])

    def compile(self, expression, *variables):
        """Compiles an expression over named variables, to evaluate over whole columns."""
        names = [ffi.new("char[]", v.encode()) for v in variables]
        array = ffi.new("const char *[]", names) if names else ffi.NULL
        out = ffi.new("calc_expr_t **")
        err = ffi.new("calc_error_t **")
        with self._lock.shared():
            _check(
                _lib.calc_expr_new_err(
                    self._h, expression.encode(), array, len(variables), out, err
                ),
                err,
            )
        return Expr(out[0], len(variables))

    def plugins(self):
        """The loaded plugins, in load order, as dicts: name, version, author, description,
        path, abi_version, operations (name, symbol, description, min_arity, max_arity with
        None for variadic) and interfaces (id, major, minor, vtable_size, bytes)."""
        with self._lock.shared():
            result = []
            for i in range(_lib.calc_host_plugin_count(self._h)):
                p = _lib.calc_host_plugin_info(self._h, i)
                if p == ffi.NULL:
                    continue
                ops = []
                for j in range(p.operation_count):
                    o = _lib.calc_host_operation_info(self._h, i, j)
                    ops.append({
                        "name": _text(o.name),
                        "symbol": _text(o.symbol) or None,
                        "description": _text(o.description),
                        "min_arity": o.min_arity,
                        "max_arity": None if o.max_arity == 0xFFFFFFFF else o.max_arity,
                    })
                interfaces = []
                for j in range(p.interface_count):
                    f = _lib.calc_host_interface_info(self._h, i, j)
                    interfaces.append({
                        "id": _text(f.id),
                        "major": f.major,
                        "minor": f.minor,
                        "vtable_size": f.vtable_size,
                        "bytes": bool(f.bytes),
                    })
                result.append({
                    "name": _text(p.name),
                    "version": _text(p.version),
                    "author": _text(p.author),
                    "description": _text(p.description),
                    "path": _text(p.path),
                    "abi_version": _text(p.abi_version),
                    "operations": ops,
                    "interfaces": interfaces,
                })
            return result

    def failures(self):
        """The files that failed to load so far, as (path, message) pairs."""
        with self._lock.shared():
            return [
                (_text(f.path), _text(f.message))
                for f in (
                    _lib.calc_host_failure(self._h, i)
                    for i in range(_lib.calc_host_failure_count(self._h))
                )
                if f != ffi.NULL
            ]

    # Hot reload.

    def enable_hot_reload(self):
        """Loads libraries from private copies from now on, so that their files can be
        rebuilt and reloaded and old versions really unloaded. Call it before loading."""
        self._exclusive_call(_lib.calc_host_enable_hot_reload_err)

    def reload_file(self, path):
        """Applies a change of a library file; returns the events it caused."""
        return self._change(_lib.calc_host_reload_file_err, os.fsencode(path))

    def remove_file(self, path):
        """Unloads the plugin loaded from a file; returns the events it caused."""
        return self._change(_lib.calc_host_remove_file_err, os.fsencode(path))

    def watch(self, enable=True):
        """Starts (or stops) watching the loaded directories; poll_changes() applies."""
        self._exclusive_call(_lib.calc_host_watch_err, 1 if enable else 0)

    def poll_changes(self):
        """Applies the changes the watcher collected that are ready; returns the events."""
        return self._change(_lib.calc_host_poll_changes_err, ffi.NULL)

    EVENT_KINDS = ("loaded", "reloaded", "removed", "failed", "unloaded", "disabled")

    def _change(self, fn, *args):
        err = ffi.new("calc_error_t **")
        with self._lock.exclusive():
            status = fn(self._h, *args, err)
            events = []
            n = _lib.calc_host_event_count(self._h)
            while self._seen_events < n:
                e = _lib.calc_host_event(self._h, self._seen_events)
                self._seen_events += 1
                kinds = Host.EVENT_KINDS
                events.append({
                    "kind": kinds[e.kind] if 0 <= e.kind < len(kinds) else "other",
                    "plugin": _text(e.plugin),
                    "version": _text(e.version),
                    "old_version": _text(e.old_version),
                    "path": _text(e.path),
                    "message": _text(e.message),
                })
            _check(status, err)
        return events


_NO_ROW = 2**64 - 1 if ffi.sizeof("size_t") == 8 else 2**32 - 1


def _batch(call, columns, out):
    """Checks columns and out (contiguous one-dimensional float64 arrays of one length), hands
    their own memory to call(pointers, column_count, rows, out, failed_row, error) and returns
    out (a new array when None)."""
    import numpy as np

    arrays = [np.asarray(c) for c in columns]
    rows = len(arrays[0]) if arrays else (len(out) if out is not None else 0)
    for i, a in enumerate(arrays):
        if a.dtype != np.float64 or a.ndim != 1 or not a.flags.c_contiguous:
            raise CalcError(
                STATUS_INVALID_ARGUMENT,
                f"column {i} is not a contiguous one-dimensional float64 array "
                f"(convert it once with numpy.ascontiguousarray(c, dtype=numpy.float64))",
            )
        if len(a) != rows:
            raise CalcError(
                STATUS_INVALID_ARGUMENT, f"column {i} has {len(a)} rows, not {rows}"
            )
    if out is None:
        out = np.empty(rows, dtype=np.float64)
    elif out.dtype != np.float64 or out.ndim != 1 or not out.flags.c_contiguous or len(out) != rows:
        raise CalcError(
            STATUS_INVALID_ARGUMENT, f"out must be a contiguous float64 array of {rows} rows"
        )
    # Views of the arrays' own memory (no copy), alive until the call returns.
    views = [ffi.from_buffer("double[]", a) for a in arrays]
    target = ffi.from_buffer("double[]", out, require_writable=True) if rows else ffi.NULL
    pointers = ffi.new("const double *[]", views or [ffi.NULL])
    failed = ffi.new("size_t *", _NO_ROW)
    err = ffi.new("calc_error_t **")
    status = call(pointers, len(views), rows, target, failed, err)
    _check(status, err, row=-1 if failed[0] == _NO_ROW else failed[0])
    return out


class Op:
    """An operation resolved once; call it like a function. Follows hot reloads."""

    def __init__(self, handle):
        self._op = handle

    def __call__(self, *args):
        out, err, operands = _cells()
        n = len(args)
        if n <= 8:
            operands[0:n] = args
            values = operands
        else:
            values = ffi.new("double[]", [float(a) for a in args])
        err[0] = ffi.NULL
        _check(_lib.calc_op_call_err(self._op, values, n, out, err), err)
        return out[0]

    def batch(self, *columns, out=None):
        """Calls the operation once per row: out[i] from columns[0][i], columns[1][i], ...
        (one column per operand). Columns are numpy float64 arrays (or anything with a
        contiguous float64 buffer), read in place; out, if given, is written in place, else a
        new float64 array is returned. One call into the library for the whole batch (the
        plugin's batch entry when it has one). A failing row raises CalcError with .row set;
        an operand count the operation does not take raises it with .row -1."""
        return _batch(
            lambda pointers, n, rows, target, failed, err: _lib.calc_op_call_batch_err(
                self._op, pointers, n, rows, target, failed, err
            ),
            columns,
            out,
        )

    def close(self):
        """Frees the handle. Calling it again does nothing."""
        if getattr(self, "_op", None) is not None:
            _lib.calc_op_free(self._op)
            self._op = None

    __del__ = close


class Expr:
    """An expression compiled over named variables, evaluated over whole columns."""

    def __init__(self, handle, variables):
        self._e = handle
        self._vars = variables

    def eval(self, *columns, out=None):
        """Evaluates every row: out[i] from columns[0][i], columns[1][i], ... (one column per
        variable, in compile()'s order). Columns are numpy float64 arrays (or anything with
        a contiguous float64 buffer), read in place; out, if given, is written in place, else
        a new float64 array is returned. A failing row raises CalcError with .row set."""
        if len(columns) != self._vars:
            raise CalcError(
                STATUS_INVALID_ARGUMENT,
                f"{len(columns)} columns for {self._vars} variables",
            )
        return _batch(
            lambda pointers, n, rows, target, failed, err: _lib.calc_expr_eval_err(
                self._e, pointers, rows, target, failed, err
            ),
            columns,
            out,
        )

    def close(self):
        """Frees the expression. Calling it again does nothing."""
        if getattr(self, "_e", None) is not None:
            _lib.calc_expr_free(self._e)
            self._e = None

    __del__ = close
