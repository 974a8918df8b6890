//go:build go1.21

package calc

/*
#include <stdlib.h>
#include "calc_host.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// withColumnArray calls call with a C array of pointers to the columns' own memory: each
// column is pinned (runtime.Pinner, Go 1.21) for the call, so its address may be stored in C
// memory, and nothing is copied.
func withColumnArray(columns [][]float64, call func(**C.double) C.calc_status_t) C.calc_status_t {
	var pinner runtime.Pinner
	defer pinner.Unpin()
	array := (**C.double)(C.calloc(C.size_t(len(columns)), C.size_t(unsafe.Sizeof((*C.double)(nil)))))
	if array == nil {
		panic("calc: out of memory")
	}
	defer C.free(unsafe.Pointer(array))
	pointers := unsafe.Slice(array, len(columns))
	for i, col := range columns {
		if len(col) > 0 {
			pinner.Pin(&col[0])
			pointers[i] = (*C.double)(unsafe.Pointer(&col[0]))
		}
	}
	return call(array)
}
