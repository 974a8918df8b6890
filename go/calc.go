// Package calc hosts calc plugins (shared libraries written in C, C++ or Rust against
// calc_plugin.h) from Go, through libcalc_host's C API (include/calc_host.h).
//
// Unlike Go's own plugin package, the plugins need not be built with the same Go toolchain
// or package versions as the program (they are not Go at all: any language with a C ABI),
// they are unloaded for real when removed or replaced, and a new version of a file can be
// loaded while the program runs (hot reload), calls in flight finishing on the old one.
//
// Errors are returned as *Error values carrying the calc status and the one-line message of
// the call that failed. They come from libcalc_host's `_err` functions, which hand each
// failure to the caller as an object: no thread-local state is read across two cgo calls, so
// a goroutine that moves between OS threads never gets another call's message.
//
// Linking: by default the package links the libcalc_host built in this repository
// (target/debug, `cargo build -p calc-host-capi`), with an rpath, so `go build` and `go test`
// need no environment. Build with `-tags calc_pkgconfig` to use an installed libcalc_host
// found through pkg-config (`cargo xtask install --prefix DIR`, then
// PKG_CONFIG_PATH=DIR/lib/pkgconfig).
//
// A Host is safe for concurrent use: calls that change it (loading, reloading, polling)
// take it exclusively, the others (evaluating, calling, listing) run concurrently.
package calc

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo !calc_pkgconfig LDFLAGS: -L${SRCDIR}/../target/debug -Wl,-rpath,${SRCDIR}/../target/debug -lcalc_host
#cgo calc_pkgconfig pkg-config: calc
#include <stdlib.h>
#include "calc_host.h"

// Evaluates a compiled expression over up to 8 columns handed over one by one: cgo lets Go
// pass pointers to Go memory as arguments, not inside memory, so the array of column
// pointers is built here, on the C stack, and the columns are read in place.
static calc_status_t calc_go_expr_eval(const calc_expr_t *expr, size_t ncols,
                                       const double *c0, const double *c1, const double *c2,
                                       const double *c3, const double *c4, const double *c5,
                                       const double *c6, const double *c7, size_t rows,
                                       double *out, size_t *failed_row, calc_error_t **error) {
    const double *columns[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
    (void)ncols;
    return calc_expr_eval_err(expr, columns, rows, out, failed_row, error);
}

// Calls an operation over up to 8 columns handed over one by one, as calc_go_expr_eval does.
static calc_status_t calc_go_op_batch(const calc_op_t *op, size_t ncols, const double *c0,
                                      const double *c1, const double *c2, const double *c3,
                                      const double *c4, const double *c5, const double *c6,
                                      const double *c7, size_t rows, double *out,
                                      size_t *failed_row, calc_error_t **error) {
    const double *columns[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
    return calc_op_call_batch_err(op, columns, ncols, rows, out, failed_row, error);
}

// A call's outcome by value, so that Go passes no pointer to its own memory (which would
// make the values escape to the heap and cgo check them on every call).
typedef struct calc_go_result {
    calc_status_t status;
    double value;
    calc_error_t *error;
} calc_go_result;

// calc_op_call_err with up to 4 operands passed by value.
static calc_go_result calc_go_op_call(const calc_op_t *op, size_t n, double a0, double a1,
                                      double a2, double a3) {
    double args[4] = {a0, a1, a2, a3};
    calc_go_result r = {0, 0, NULL};
    r.status = calc_op_call_err(op, args, n, &r.value, &r.error);
    return r;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status is a calc status code: 0 for success, 1-99 reported by an operation (see
// calc_plugin.h), 100-199 by the host (see calc_host.h).
type Status int

// The statuses a caller may want to tell apart.
const (
	StatusOK              Status = C.CALC_STATUS_OK
	StatusInvalidArgument Status = C.CALC_STATUS_INVALID_ARGUMENT
	StatusDomainError     Status = C.CALC_STATUS_DOMAIN_ERROR
	StatusDivisionByZero  Status = C.CALC_STATUS_DIVISION_BY_ZERO
	StatusError           Status = C.CALC_STATUS_ERROR
	StatusNullArgument    Status = C.CALC_STATUS_NULL_ARGUMENT
	StatusInvalidUTF8     Status = C.CALC_STATUS_INVALID_UTF8
	StatusNotFound        Status = C.CALC_STATUS_NOT_FOUND
	StatusParseError      Status = C.CALC_STATUS_PARSE_ERROR
	StatusLoadFailed      Status = C.CALC_STATUS_LOAD_FAILED
	StatusInternal        Status = C.CALC_STATUS_INTERNAL
	StatusUntrusted       Status = C.CALC_STATUS_UNTRUSTED
)

// String describes the status ("division by zero").
func (s Status) String() string {
	return C.GoString(C.calc_status_describe(C.calc_status_t(s)))
}

// Error is a failed call: its status and one line naming what failed and why (the file and
// reason of a failed load, the column of a parse error, the operation and plugin of a failed
// call).
type Error struct {
	Status  Status
	Message string
	// Row is the first failing row of a batch (Expr.Eval, Op.CallBatch), else -1.
	Row int
}

func (e *Error) Error() string { return e.Message }

// check turns a status and the error object of an `_err` call into a Go error, freeing the
// object.
func check(status C.calc_status_t, err *C.calc_error_t) error {
	if status == C.CALC_STATUS_OK {
		return nil
	}
	e := &Error{Status: Status(status), Row: -1}
	if err != nil {
		e.Message = C.GoString(C.calc_error_message(err))
		C.calc_error_free(err)
	}
	if e.Message == "" {
		e.Message = e.Status.String()
	}
	return e
}

// Version is the version of the libcalc_host the package is linked with.
func Version() string { return C.GoString(C.calc_host_version()) }

// Host holds loaded plugins. Create it with New, release it with Close.
type Host struct {
	mu sync.RWMutex
	h  *C.calc_host_t
	// seen is how many of the host's events were returned already.
	seen int
}

// New creates an empty host.
func New() (*Host, error) {
	var h *C.calc_host_t
	var err *C.calc_error_t
	if e := check(C.calc_host_new_err(&h, &err), err); e != nil {
		return nil, e
	}
	host := &Host{h: h}
	runtime.SetFinalizer(host, (*Host).Close)
	return host, nil
}

// Close shuts every plugin down, unloads them and frees the host. Ops and Exprs made from it
// keep their plugins loaded until they are closed. Calling Close again does nothing.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h != nil {
		C.calc_host_free(h.h)
		h.h = nil
		runtime.SetFinalizer(h, nil)
	}
}

func cstr(s string) *C.char { return C.CString(s) }

// LoadDir loads every plugin library in dir and returns how many loaded. A file that fails
// to load does not make it fail (see Failures); a directory that cannot be read does.
func (h *Host) LoadDir(dir string) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := cstr(dir)
	defer C.free(unsafe.Pointer(d))
	var n C.size_t
	var err *C.calc_error_t
	e := check(C.calc_host_load_dir_err(h.h, d, &n, &err), err)
	return int(n), e
}

// LoadFile loads one plugin library.
func (h *Host) LoadFile(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := cstr(path)
	defer C.free(unsafe.Pointer(p))
	var err *C.calc_error_t
	return check(C.calc_host_load_file_err(h.h, p, &err), err)
}

// LoadConfig reads a calc configuration file (docs/CONFIG.md): plugin settings, which
// plugins are enabled or preferred, rollouts, isolation in runner processes, the trust
// policy. It applies to plugins loaded afterwards.
func (h *Host) LoadConfig(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := cstr(path)
	defer C.free(unsafe.Pointer(p))
	var err *C.calc_error_t
	return check(C.calc_host_load_config_err(h.h, p, &err), err)
}

// SetPluginConfig sets the configuration value key of plugin for plugins loaded afterwards.
func (h *Host) SetPluginConfig(plugin, key, value string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, k, v := cstr(plugin), cstr(key), cstr(value)
	defer C.free(unsafe.Pointer(p))
	defer C.free(unsafe.Pointer(k))
	defer C.free(unsafe.Pointer(v))
	var err *C.calc_error_t
	return check(C.calc_host_set_plugin_config_err(h.h, p, k, v, &err), err)
}

// Eval parses and evaluates an expression such as "2 ^ 10 - max(3, 4) / 2".
func (h *Host) Eval(expression string) (float64, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	e := cstr(expression)
	defer C.free(unsafe.Pointer(e))
	var out C.double
	var err *C.calc_error_t
	if e := check(C.calc_host_eval_err(h.h, e, &out, &err), err); e != nil {
		return 0, e
	}
	return float64(out), nil
}

// Call calls the operation named operation (a name such as "add", or an infix symbol such
// as "+") with args.
func (h *Host) Call(operation string, args ...float64) (float64, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	o := cstr(operation)
	defer C.free(unsafe.Pointer(o))
	var out C.double
	var err *C.calc_error_t
	if e := check(C.calc_host_call_err(h.h, o, doubles(args), C.size_t(len(args)), &out, &err), err); e != nil {
		return 0, e
	}
	return float64(out), nil
}

// doubles is the address of xs' first element for C (nil for an empty slice): Go memory
// without pointers in it, which cgo lets C read during the call.
func doubles(xs []float64) *C.double {
	if len(xs) == 0 {
		return nil
	}
	return (*C.double)(unsafe.Pointer(&xs[0]))
}

// Op is an operation resolved once, to be called many times; it follows hot reloads. Safe
// for concurrent use. Close it when done.
type Op struct {
	mu sync.RWMutex
	op *C.calc_op_t
}

// Op resolves an operation by name or infix symbol.
func (h *Host) Op(operation string) (*Op, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	o := cstr(operation)
	defer C.free(unsafe.Pointer(o))
	var op *C.calc_op_t
	var err *C.calc_error_t
	if e := check(C.calc_op_new_err(h.h, o, &op, &err), err); e != nil {
		return nil, e
	}
	r := &Op{op: op}
	runtime.SetFinalizer(r, (*Op).Close)
	return r, nil
}

// Call calls the operation with args.
func (o *Op) Call(args ...float64) (float64, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if len(args) <= 4 {
		var a [4]float64
		copy(a[:], args)
		r := C.calc_go_op_call(o.op, C.size_t(len(args)), C.double(a[0]), C.double(a[1]),
			C.double(a[2]), C.double(a[3]))
		if e := check(r.status, r.error); e != nil {
			return 0, e
		}
		return float64(r.value), nil
	}
	var out C.double
	var err *C.calc_error_t
	if e := check(C.calc_op_call_err(o.op, doubles(args), C.size_t(len(args)), &out, &err), err); e != nil {
		return 0, e
	}
	return float64(out), nil
}

// CallBatch calls the operation once per row: out[i] from columns[0][i], columns[1][i], ...
// (one column per operand). The columns and out are read and written in place, without
// copying (from Go 1.21; before it, more than 8 columns are copied: see withColumnArray), in
// one cgo call: the plugin's batch entry runs over them when it has one. The version serving
// when the call starts serves every row. A failing row stops it with an *Error whose Row is
// that row (out holds the rows before it); an operand count the operation does not take
// fails before any row, with Row -1.
func (o *Op) CallBatch(out []float64, columns ...[]float64) error {
	if err := checkColumns(out, columns); err != nil {
		return err
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	n, rows := C.size_t(len(columns)), C.size_t(len(out))
	return runBatch(columns,
		func(c *[stackColumns]*C.double, failed *C.size_t, e **C.calc_error_t) C.calc_status_t {
			return C.calc_go_op_batch(o.op, n, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], rows,
				doubles(out), failed, e)
		},
		func(c **C.double, failed *C.size_t, e **C.calc_error_t) C.calc_status_t {
			return C.calc_op_call_batch_err(o.op, c, n, rows, doubles(out), failed, e)
		})
}

// runBatch runs a batch over columns through narrow, which hands up to stackColumns columns
// to C one by one, or through wide, which hands over a C array of them (withColumnArray), and
// returns its error with the failing row.
func runBatch(columns [][]float64,
	narrow func(c *[stackColumns]*C.double, failed *C.size_t, e **C.calc_error_t) C.calc_status_t,
	wide func(c **C.double, failed *C.size_t, e **C.calc_error_t) C.calc_status_t) error {
	failed := noRow
	var e *C.calc_error_t
	var status C.calc_status_t
	if len(columns) <= stackColumns {
		c := columnPointers(columns)
		status = narrow(&c, &failed, &e)
	} else {
		status = withColumnArray(columns, func(c **C.double) C.calc_status_t {
			return wide(c, &failed, &e)
		})
	}
	return batchError(status, e, failed)
}

// noRow marks a failed batch row index the library did not write.
const noRow = ^C.size_t(0)

// stackColumns is the most columns handed to C one by one as arguments (see
// calc_go_op_batch); more go through withColumnArray.
const stackColumns = 8

// checkColumns checks that every column has len(out) values.
func checkColumns(out []float64, columns [][]float64) error {
	for i, col := range columns {
		if len(col) != len(out) {
			return &Error{Status: StatusInvalidArgument, Row: -1,
				Message: fmt.Sprintf("column %d has %d rows, out has %d", i, len(col), len(out))}
		}
	}
	return nil
}

// columnPointers returns the addresses of up to stackColumns columns for C.
func columnPointers(columns [][]float64) [stackColumns]*C.double {
	var c [stackColumns]*C.double
	for i, col := range columns {
		c[i] = doubles(col)
	}
	return c
}

// batchError is check's result for a batch, with the failing row when the library named one.
func batchError(status C.calc_status_t, err *C.calc_error_t, failed C.size_t) error {
	e := check(status, err)
	if e != nil && failed != noRow {
		e.(*Error).Row = int(failed)
	}
	return e
}

// Close frees the handle. Calling it again does nothing.
func (o *Op) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.op != nil {
		C.calc_op_free(o.op)
		o.op = nil
		runtime.SetFinalizer(o, nil)
	}
}

// Expr is an expression compiled once over named variables, evaluated over whole columns.
// Safe for concurrent use. Close it when done.
type Expr struct {
	mu   sync.RWMutex
	e    *C.calc_expr_t
	vars int
}

// Compile compiles expression over the variables named vars.
func (h *Host) Compile(expression string, vars ...string) (*Expr, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	e := cstr(expression)
	defer C.free(unsafe.Pointer(e))
	// The names are copied by the library; the array of pointers to them lives in C memory.
	names := (**C.char)(C.calloc(C.size_t(len(vars)+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	defer C.free(unsafe.Pointer(names))
	slots := unsafe.Slice(names, len(vars)+1)
	for i, v := range vars {
		slots[i] = cstr(v)
		defer C.free(unsafe.Pointer(slots[i]))
	}
	var expr *C.calc_expr_t
	var err *C.calc_error_t
	if e := check(C.calc_expr_new_err(h.h, e, names, C.size_t(len(vars)), &expr, &err), err); e != nil {
		return nil, e
	}
	r := &Expr{e: expr, vars: len(vars)}
	runtime.SetFinalizer(r, (*Expr).Close)
	return r, nil
}

// Eval evaluates the expression for every row: out[i] from columns[0][i], columns[1][i], ...
// (one column per variable, in Compile's order). The columns and out are read and written in
// place, without copying. A failing row stops it with an *Error whose Row is that row.
func (x *Expr) Eval(out []float64, columns ...[]float64) error {
	if len(columns) != x.vars {
		return &Error{Status: StatusInvalidArgument, Row: -1,
			Message: fmt.Sprintf("%d columns for %d variables", len(columns), x.vars)}
	}
	if err := checkColumns(out, columns); err != nil {
		return err
	}
	if len(out) == 0 {
		return nil
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n, rows := C.size_t(len(columns)), C.size_t(len(out))
	return runBatch(columns,
		func(c *[stackColumns]*C.double, failed *C.size_t, e **C.calc_error_t) C.calc_status_t {
			return C.calc_go_expr_eval(x.e, n, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], rows,
				doubles(out), failed, e)
		},
		func(c **C.double, failed *C.size_t, e **C.calc_error_t) C.calc_status_t {
			return C.calc_expr_eval_err(x.e, c, rows, doubles(out), failed, e)
		})
}

// Close frees the expression. Calling it again does nothing.
func (x *Expr) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.e != nil {
		C.calc_expr_free(x.e)
		x.e = nil
		runtime.SetFinalizer(x, nil)
	}
}
