package calc

/*
#include <stdlib.h>
#include "calc_host.h"
*/
import "C"

import "unsafe"

// EventKind says what happened to a plugin.
type EventKind int

// The kinds of Event (calc_host.h's CALC_EVENT_*).
const (
	// Loaded: a new plugin file was loaded.
	Loaded EventKind = C.CALC_EVENT_LOADED
	// Reloaded: a changed file replaced the running version; calls in flight finish on the
	// old one, which is unloaded after its last call (an Unloaded event).
	Reloaded EventKind = C.CALC_EVENT_RELOADED
	// Removed: the plugin's file went away; its operations are no longer offered.
	Removed EventKind = C.CALC_EVENT_REMOVED
	// Failed: a file failed to (re)load; an old version, if any, keeps serving.
	Failed EventKind = C.CALC_EVENT_FAILED
	// Unloaded: an old version was shut down and its library closed.
	Unloaded EventKind = C.CALC_EVENT_UNLOADED
	// Disabled: a plugin file was found, but the settings disable that plugin.
	Disabled EventKind = C.CALC_EVENT_DISABLED
	// Other: a kind a later libcalc_host reports; Message says what.
	Other EventKind = -1
)

func (k EventKind) String() string {
	switch k {
	case Loaded:
		return "loaded"
	case Reloaded:
		return "reloaded"
	case Removed:
		return "removed"
	case Failed:
		return "failed"
	case Unloaded:
		return "unloaded"
	case Disabled:
		return "disabled"
	}
	return "other"
}

// Event is one thing a reload, removal or poll did.
type Event struct {
	Kind EventKind
	// Plugin is the plugin's name ("" for a failure).
	Plugin string
	// Version is the version loaded, serving after a reload, or unloaded.
	Version string
	// OldVersion is the version a reload replaced.
	OldVersion string
	// Path is the file, when the event has one.
	Path string
	// Message is the whole event in one line ("reloaded add 1.0.0 -> 1.0.0 in 0.4 ms"), the
	// reason included for a failure.
	Message string
}

func (e Event) String() string { return e.Message }

// EnableHotReload turns hot-reload mode on: libraries are loaded from private copies, so that
// their files can be rebuilt in place and reloaded, and old versions really unloaded. Call it
// before loading.
func (h *Host) EnableHotReload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err *C.calc_error_t
	return check(C.calc_host_enable_hot_reload_err(h.h, &err), err)
}

// ReloadFile applies a change of the library at path (loads it, or loads it as the new
// version of the plugin that came from it) and reports what changed.
func (h *Host) ReloadFile(path string) ([]Event, error) {
	return h.change(func() error {
		p := cstr(path)
		defer C.free(unsafe.Pointer(p))
		var err *C.calc_error_t
		return check(C.calc_host_reload_file_err(h.h, p, &err), err)
	})
}

// RemoveFile unloads the plugin loaded from path and reports it.
func (h *Host) RemoveFile(path string) ([]Event, error) {
	return h.change(func() error {
		p := cstr(path)
		defer C.free(unsafe.Pointer(p))
		var err *C.calc_error_t
		return check(C.calc_host_remove_file_err(h.h, p, &err), err)
	})
}

// Watch starts (or stops) watching the directories loaded so far for added, rebuilt and
// deleted libraries; PollChanges applies what it collected.
func (h *Host) Watch(enable bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	on := C.int(0)
	if enable {
		on = 1
	}
	var err *C.calc_error_t
	return check(C.calc_host_watch_err(h.h, on, &err), err)
}

// PollChanges applies the changes the watcher collected that are ready (each file quiet for
// 200 ms), without waiting, and reports them. Call it where the program can afford a change,
// e.g. once per main-loop iteration; meanwhile Ops keep working from other goroutines.
func (h *Host) PollChanges() ([]Event, error) {
	return h.change(func() error {
		var err *C.calc_error_t
		return check(C.calc_host_poll_changes_err(h.h, nil, &err), err)
	})
}

// change runs apply with the host to itself and returns the events it caused (with any
// unloads of old versions that happened since the last change).
func (h *Host) change(apply func() error) ([]Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := apply()
	return h.newEvents(), e
}

// newEvents reads the host's event log from where the last read stopped.
func (h *Host) newEvents() []Event {
	n := int(C.calc_host_event_count(h.h))
	var events []Event
	for ; h.seen < n; h.seen++ {
		ev := C.calc_host_event(h.h, C.size_t(h.seen))
		if ev == nil {
			continue
		}
		kind := EventKind(ev.kind)
		if kind < Loaded || kind > Disabled {
			kind = Other
		}
		events = append(events, Event{
			Kind:       kind,
			Plugin:     C.GoString(ev.plugin),
			Version:    C.GoString(ev.version),
			OldVersion: C.GoString(ev.old_version),
			Path:       C.GoString(ev.path),
			Message:    C.GoString(ev.message),
		})
	}
	return events
}
