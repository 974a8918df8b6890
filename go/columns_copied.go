//go:build !go1.21

package calc

/*
#include <stdlib.h>
#include <string.h>
#include "calc_host.h"
*/
import "C"

import "unsafe"

// withColumnArray calls call with a C array of pointers to copies of the columns in C memory:
// before Go 1.21 (no runtime.Pinner) a Go pointer may not be stored in C memory, so more than
// 8 columns are copied for the call (up to 8 are passed one by one, in place).
func withColumnArray(columns [][]float64, call func(**C.double) C.calc_status_t) C.calc_status_t {
	size := C.size_t(unsafe.Sizeof((*C.double)(nil)))
	array := (**C.double)(C.calloc(C.size_t(len(columns)), size))
	if array == nil {
		panic("calc: out of memory")
	}
	defer C.free(unsafe.Pointer(array))
	pointers := unsafe.Slice(array, len(columns))
	for i, col := range columns {
		if len(col) == 0 {
			continue
		}
		bytes := C.size_t(len(col)) * C.size_t(unsafe.Sizeof(col[0]))
		dup := (*C.double)(C.malloc(bytes))
		if dup == nil {
			panic("calc: out of memory")
		}
		defer C.free(unsafe.Pointer(dup))
		C.memcpy(unsafe.Pointer(dup), unsafe.Pointer(&col[0]), bytes)
		pointers[i] = dup
	}
	return call(array)
}
