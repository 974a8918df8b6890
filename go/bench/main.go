// Command bench measures the Go package against its references in the same run: a scalar
// call through Op.Call against a bare cgo call of the same C function (the add plugin's
// execute, found with dlopen), and a batch of 1M pairs through Expr.Eval and through
// Op.CallBatch against a Go loop.
// Each figure is the median over rounds; each ratio the median of the two figures of the
// same round (the machines are shared and noisy: ratios count).
//
//	go run ./bench PLUGIN_DIR [-quick]
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include "calc_plugin.h"

// The add plugin's execute function, or NULL.
static calc_execute_fn add_execute(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) return NULL;
    calc_plugin_entry_fn entry = (calc_plugin_entry_fn)dlsym(lib, "plugin_entry");
    if (entry == NULL) return NULL;
    const calc_plugin_t *plugin = entry();
    return plugin == NULL || plugin->operation_count < 1 ? NULL : plugin->operations[0].execute;
}

// One raw call, its status tested by the caller: what a bare cgo call of the function costs.
static calc_status_t call_raw(calc_execute_fn f, double a, double b, double *out) {
    double args[2] = {a, b};
    char error[256];
    error[0] = 0;
    return f(NULL, args, 2, out, error, sizeof error);
}
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unsafe"

	"calchost"
)

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// rounds runs each candidate in turn, rounds times, and returns each one's figures.
func rounds(n int, candidates []func() float64) [][]float64 {
	out := make([][]float64, len(candidates))
	for r := 0; r < n; r++ {
		for i, c := range candidates {
			out[i] = append(out[i], c())
		}
	}
	return out
}

func ratio(a, ref []float64) float64 {
	rs := make([]float64, len(a))
	for i := range a {
		rs[i] = a[i] / ref[i]
	}
	return median(rs)
}

func row(what, ref string, ours, reference []float64, unit string) {
	fmt.Printf("%-44s %10.2f %-3s vs %-28s %10.2f %-3s ratio %5.2fx\n",
		what, median(ours), unit, ref, median(reference), unit, ratio(ours, reference))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench PLUGIN_DIR [-quick]")
		os.Exit(2)
	}
	dir := os.Args[1]
	quick := len(os.Args) > 2 && os.Args[2] == "-quick"
	n, calls, pairs := 21, 1_000_000, 1_000_000
	if quick {
		n, calls, pairs = 3, 10_000, 10_000
	}

	path := C.CString(filepath.Join(dir, "libadd.so"))
	defer C.free(unsafe.Pointer(path))
	exec := C.add_execute(path)
	if exec == nil {
		fmt.Fprintln(os.Stderr, "bench: cannot find add's execute in", dir)
		os.Exit(1)
	}
	host, err := calc.New()
	if err != nil {
		panic(err)
	}
	defer host.Close()
	if _, err := host.LoadDir(dir); err != nil {
		panic(err)
	}
	op, err := host.Op("add")
	if err != nil {
		panic(err)
	}
	defer op.Close()

	sink := 0.0
	scalar := rounds(n, []func() float64{
		func() float64 {
			start := time.Now()
			var out C.double
			for i := 0; i < calls; i++ {
				if C.call_raw(exec, C.double(i), 1, &out) != 0 {
					panic("raw call failed")
				}
				sink += float64(out)
			}
			return float64(time.Since(start).Nanoseconds()) / float64(calls)
		},
		func() float64 {
			start := time.Now()
			for i := 0; i < calls; i++ {
				v, err := op.Call(float64(i), 1)
				if err != nil {
					panic(err)
				}
				sink += v
			}
			return float64(time.Since(start).Nanoseconds()) / float64(calls)
		},
	})

	expr, err := host.Compile("x + y", "x", "y")
	if err != nil {
		panic(err)
	}
	defer expr.Close()
	a, b, out := make([]float64, pairs), make([]float64, pairs), make([]float64, pairs)
	for i := range a {
		a[i], b[i] = float64(i), 0.5
	}
	batch := rounds(n, []func() float64{
		func() float64 {
			start := time.Now()
			for i := range out {
				out[i] = a[i] + b[i]
			}
			return float64(time.Since(start).Nanoseconds()) / float64(pairs)
		},
		func() float64 {
			start := time.Now()
			if err := expr.Eval(out, a, b); err != nil {
				panic(err)
			}
			return float64(time.Since(start).Nanoseconds()) / float64(pairs)
		},
		func() float64 {
			out[pairs-1] = 0
			start := time.Now()
			if err := op.CallBatch(out, a, b); err != nil {
				panic(err)
			}
			t := float64(time.Since(start).Nanoseconds()) / float64(pairs)
			if out[pairs-1] != float64(pairs-1)+0.5 {
				panic("wrong batch results")
			}
			return t
		},
	})
	if out[pairs-1] != float64(pairs-1)+0.5 || sink == 0 {
		panic("wrong results")
	}
	fmt.Printf("Go package (%s), median of %d rounds; ratio = median over rounds of the two figures of the same round\n",
		calc.Version(), n)
	row("Op.Call (scalar, add)", "bare cgo call of add's execute", scalar[1], scalar[0], "ns")
	row(fmt.Sprintf("Expr.Eval x + y over %d pairs", pairs), "Go loop out[i] = a[i] + b[i]", batch[1], batch[0], "ns")
	row(fmt.Sprintf("Op.CallBatch add over %d pairs", pairs), "Go loop out[i] = a[i] + b[i]", batch[2], batch[0], "ns")
}
