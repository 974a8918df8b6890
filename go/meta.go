package calc

/*
#include "calc_host.h"
*/
import "C"

// PluginInfo describes a loaded plugin.
type PluginInfo struct {
	Name, Version, Author, Description string
	// Path is the library the plugin was loaded from.
	Path string
	// ABIVersion is the calc ABI the plugin was built for ("1.4").
	ABIVersion string
	Operations []OperationInfo
	// Interfaces are the application-defined interfaces it implements (ABI 1.4).
	Interfaces []InterfaceInfo
}

// OperationInfo describes one operation of a plugin.
type OperationInfo struct {
	Name, Description string
	// Symbol is the infix symbol ("+"), or "" for a function.
	Symbol string
	// MinArity and MaxArity bound the operand count; MaxArity is -1 for a variadic function.
	MinArity, MaxArity int
}

// InterfaceInfo describes one application-defined interface a plugin implements.
type InterfaceInfo struct {
	// ID is the interface id, "vendor.name".
	ID           string
	Major, Minor int
	// VtableSize is the size of the plugin's vtable in bytes.
	VtableSize int
	// Bytes is true for a bytes interface, which can run isolated.
	Bytes bool
}

// Failure is a file that failed to load.
type Failure struct {
	Path, Message string
}

// Plugins lists the loaded plugins, in load order.
func (h *Host) Plugins() []PluginInfo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.plugins()
}

func (h *Host) plugins() []PluginInfo {
	n := int(C.calc_host_plugin_count(h.h))
	out := make([]PluginInfo, 0, n)
	for i := 0; i < n; i++ {
		p := C.calc_host_plugin_info(h.h, C.size_t(i))
		if p == nil {
			continue
		}
		info := PluginInfo{
			Name:        C.GoString(p.name),
			Version:     C.GoString(p.version),
			Author:      C.GoString(p.author),
			Description: C.GoString(p.description),
			Path:        C.GoString(p.path),
			ABIVersion:  C.GoString(p.abi_version),
		}
		for j := 0; j < int(p.operation_count); j++ {
			o := C.calc_host_operation_info(h.h, C.size_t(i), C.size_t(j))
			if o == nil {
				continue
			}
			op := OperationInfo{
				Name:        C.GoString(o.name),
				Description: C.GoString(o.description),
				MinArity:    int(o.min_arity),
				MaxArity:    int(o.max_arity),
			}
			if o.symbol != nil {
				op.Symbol = C.GoString(o.symbol)
			}
			if o.max_arity == C.CALC_ARITY_VARIADIC {
				op.MaxArity = -1
			}
			info.Operations = append(info.Operations, op)
		}
		for j := 0; j < int(p.interface_count); j++ {
			f := C.calc_host_interface_info(h.h, C.size_t(i), C.size_t(j))
			if f == nil {
				continue
			}
			info.Interfaces = append(info.Interfaces, InterfaceInfo{
				ID:         C.GoString(f.id),
				Major:      int(f.major),
				Minor:      int(f.minor),
				VtableSize: int(f.vtable_size),
				Bytes:      f.bytes != 0,
			})
		}
		out = append(out, info)
	}
	return out
}

// Failures lists the files that failed to load so far, oldest first.
func (h *Host) Failures() []Failure {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.failures()
}

func (h *Host) failures() []Failure {
	n := int(C.calc_host_failure_count(h.h))
	out := make([]Failure, 0, n)
	for i := 0; i < n; i++ {
		if f := C.calc_host_failure(h.h, C.size_t(i)); f != nil {
			out = append(out, Failure{Path: C.GoString(f.path), Message: C.GoString(f.message)})
		}
	}
	return out
}
