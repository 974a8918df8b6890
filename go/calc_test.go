package calc

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// pluginDir is the directory of calc's example plugins (add, sub, mul, div, pow, cmath,
// stats, cpp_trig), which the Rust test suite builds and names in CALC_PLUGIN_DIR.
func pluginDir(t *testing.T) string {
	dir := os.Getenv("CALC_PLUGIN_DIR")
	if dir == "" {
		t.Skip("CALC_PLUGIN_DIR is not set: run through `cargo test -p calc-tests --test go`")
	}
	return dir
}

func loaded(t *testing.T) *Host {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	n, err := h.LoadDir(pluginDir(t))
	if err != nil || n < 8 {
		t.Fatalf("LoadDir: %d plugins, %v", n, err)
	}
	return h
}

func wantError(t *testing.T, err error, status Status, part string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Message, part) {
		t.Fatalf("want a %v error mentioning %q, got %#v", status, part, err)
	}
	return e
}

func TestEvalAndCallUseCAndRustAndCppPlugins(t *testing.T) {
	h := loaded(t)
	for expr, want := range map[string]float64{
		"2 + 3 * 4":              14, // add (C), mul (Rust)
		"2 ^ 10 - max(3, 4) / 2": 1022,
		"hypot(3, 4) - 10 % 4":   3, // cmath (C), div (Rust)
		"cos(0)":                 1, // cpp_trig (C++)
	} {
		got, err := h.Eval(expr)
		if err != nil || got != want {
			t.Errorf("Eval(%q) = %v, %v; want %v", expr, got, err, want)
		}
	}
	if got, err := h.Call("add", 2, 3); err != nil || got != 5 {
		t.Errorf("Call(add, 2, 3) = %v, %v", got, err)
	}
	if got, err := h.Call("*", 6, 7); err != nil || got != 42 {
		t.Errorf("Call(*, 6, 7) = %v, %v", got, err)
	}
	_, err := h.Eval("2 +")
	wantError(t, err, StatusParseError, "column")
	_, err = h.Eval("1 / 0")
	wantError(t, err, StatusDivisionByZero, "div")
	_, err = h.Call("nosuch", 1)
	wantError(t, err, StatusNotFound, "nosuch")
}

func TestAnOpIsResolvedOnceAndChecksItsOperands(t *testing.T) {
	h := loaded(t)
	op, err := h.Op("+")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if got, err := op.Call(1.5, 2.25); err != nil || got != 3.75 {
		t.Errorf("op.Call = %v, %v", got, err)
	}
	_, err = op.Call(1)
	wantError(t, err, StatusInvalidArgument, "expects 2 operands, got 1")
	if _, err := h.Op("nosuch"); err == nil {
		t.Error("Op(nosuch) resolved")
	}
}

func TestAnExpressionRunsOverColumnsInPlace(t *testing.T) {
	h := loaded(t)
	x, err := h.Compile("x * y + 1", "x", "y")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	const rows = 100000
	a, b, out := make([]float64, rows), make([]float64, rows), make([]float64, rows)
	for i := range a {
		a[i], b[i] = float64(i), 0.5
	}
	if err := x.Eval(out, a, b); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if out[i] != float64(i)*0.5+1 {
			t.Fatalf("row %d: %v", i, out[i])
		}
	}
	// A failing row is named.
	inv, err := h.Compile("1 / x", "x")
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	err = inv.Eval(make([]float64, 3), []float64{1, 2, 0})
	if e := wantError(t, err, StatusDivisionByZero, "div"); e.Row != 2 {
		t.Errorf("failing row %d, want 2", e.Row)
	}
	wantError(t, x.Eval(out, a), StatusInvalidArgument, "1 columns for 2 variables")
	wantError(t, x.Eval(out[:3], a, b), StatusInvalidArgument, "column 0 has")
}

// More columns than are handed to C one by one (8) go through an array of them.
func TestWideBatchesAndExpressions(t *testing.T) {
	h := loaded(t)
	const rows, width = 1000, 12
	columns := make([][]float64, width)
	names := make([]string, width)
	terms := make([]string, width)
	for k := range columns {
		columns[k] = make([]float64, rows)
		for i := range columns[k] {
			columns[k][i] = float64((i*7+k*13)%101) - 50
		}
		names[k] = fmt.Sprintf("v%d", k)
		terms[k] = names[k]
	}
	want := func(i int) (float64, float64) {
		biggest, sum := math.Inf(-1), 0.0
		for k := range columns {
			biggest = math.Max(biggest, columns[k][i])
			sum += columns[k][i]
		}
		return biggest, sum
	}
	max, err := h.Op("max")
	if err != nil {
		t.Fatal(err)
	}
	defer max.Close()
	out := make([]float64, rows)
	if err := max.CallBatch(out, columns...); err != nil {
		t.Fatal(err)
	}
	sum, err := h.Compile(strings.Join(terms, " + "), names...)
	if err != nil {
		t.Fatal(err)
	}
	defer sum.Close()
	sums := make([]float64, rows)
	if err := sum.Eval(sums, columns...); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		if b, s := want(i); out[i] != b || sums[i] != s {
			t.Fatalf("row %d: max %v sum %v, want %v and %v", i, out[i], sums[i], b, s)
		}
	}
	// A failing row of a wide expression is named: the first row with a zero in a column.
	inv, err := h.Compile("1 / ("+strings.Join(terms, " * ")+")", names...)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	first := -1
	for i := 0; i < rows && first < 0; i++ {
		for k := range columns {
			if columns[k][i] == 0 {
				first = i
				break
			}
		}
	}
	if first < 0 {
		t.Fatal("no zero in the columns")
	}
	err = inv.Eval(sums, columns...)
	if e := wantError(t, err, StatusDivisionByZero, "div"); e.Row != first {
		t.Errorf("failing row %d, want %d", e.Row, first)
	}
	if err := max.CallBatch(out[:0], make([][]float64, width)...); err != nil {
		t.Errorf("an empty wide batch: %v", err)
	}
}

func TestAnOpRunsOverColumnsInPlace(t *testing.T) {
	h := loaded(t)
	// add is C, mul Rust, atan2 C++: each plugin's own batch path, or its scalar fallback.
	for _, c := range []struct {
		op   string
		want func(a, b float64) float64
	}{
		{"+", func(a, b float64) float64 { return a + b }},
		{"*", func(a, b float64) float64 { return a * b }},
		// Go's math.Atan2 may differ from the C library's in the last bit: the oracle is the
		// same operation called one row at a time.
		{"atan2", nil},
	} {
		op, err := h.Op(c.op)
		if err != nil {
			t.Fatal(err)
		}
		const rows = 100000
		a, b, out := make([]float64, rows), make([]float64, rows), make([]float64, rows)
		for i := range a {
			a[i], b[i] = float64(i)-500, 0.25*float64(i%7)+1
		}
		if err := op.CallBatch(out, a, b); err != nil {
			t.Fatalf("%s: %v", c.op, err)
		}
		for i := range out {
			want, err := op.Call(a[i], b[i])
			if err != nil {
				t.Fatal(err)
			}
			if c.want != nil && c.want(a[i], b[i]) != want {
				t.Fatalf("%s row %d: a call gives %v, want %v", c.op, i, want, c.want(a[i], b[i]))
			}
			if out[i] != want {
				t.Fatalf("%s row %d: %v, want %v", c.op, i, out[i], want)
			}
		}
		op.Close()
	}
	div, err := h.Op("/")
	if err != nil {
		t.Fatal(err)
	}
	defer div.Close()
	out := make([]float64, 4)
	err = div.CallBatch(out, []float64{1, 2, 3, 4}, []float64{2, 4, 0, 1})
	if e := wantError(t, err, StatusDivisionByZero, "row 2: div (plugin div)"); e.Row != 2 {
		t.Errorf("failing row %d, want 2", e.Row)
	}
	if out[0] != 0.5 || out[1] != 0.5 {
		t.Errorf("rows before the failing one: %v", out[:2])
	}
	// Refused before any row: no row named.
	if e := wantError(t, div.CallBatch(out, []float64{1, 2, 3, 4}), StatusInvalidArgument,
		"expects 2 operands, got 1"); e.Row != -1 {
		t.Errorf("arity error names row %d", e.Row)
	}
	wantError(t, div.CallBatch(out, []float64{1}, []float64{2}), StatusInvalidArgument, "column 0 has 1 rows")
	nine := make([][]float64, 9)
	for i := range nine {
		nine[i] = out
	}
	wantError(t, div.CallBatch(out, nine...), StatusInvalidArgument, "expects 2 operands, got 9")
	if err := div.CallBatch(nil, nil, nil); err != nil {
		t.Errorf("an empty batch: %v", err)
	}
}

func TestPluginsAreListedWithTheirOperationsAndInterfaces(t *testing.T) {
	h := loaded(t)
	byName := map[string]PluginInfo{}
	for _, p := range h.Plugins() {
		byName[p.Name] = p
	}
	add, ok := byName["add"]
	if !ok || add.Version == "" || !strings.HasSuffix(add.Path, ".so") || add.ABIVersion == "" {
		t.Fatalf("add: %#v", add)
	}
	if len(add.Operations) != 1 || add.Operations[0].Symbol != "+" || add.Operations[0].MaxArity != 2 {
		t.Errorf("add's operations: %#v", add.Operations)
	}
	found := false
	for _, op := range byName["stats"].Operations {
		if op.Name == "max" {
			found = op.MaxArity == -1 && op.MinArity == 1
		}
	}
	if !found {
		t.Errorf("stats.max is not listed as variadic: %#v", byName["stats"].Operations)
	}

	shapes := os.Getenv("CALC_SHAPES_PLUGIN")
	if shapes == "" {
		t.Skip("CALC_SHAPES_PLUGIN is not set")
	}
	if err := h.LoadFile(shapes); err != nil {
		t.Fatal(err)
	}
	var got []InterfaceInfo
	for _, p := range h.Plugins() {
		if p.Name == "shapes" {
			got = p.Interfaces
		}
	}
	if len(got) != 3 || got[0].ID != "calc-tests.shape" || got[0].Minor != 1 || got[0].Bytes ||
		got[2].ID != "calc-tests.text" || !got[2].Bytes || got[2].VtableSize == 0 {
		t.Errorf("shapes' interfaces: %#v", got)
	}
}

func TestLoadFailuresAreListed(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	bad := filepath.Join(t.TempDir(), "libbad.so")
	if err := os.WriteFile(bad, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, h.LoadFile(bad), StatusLoadFailed, "libbad.so")
	f := h.Failures()
	if len(f) != 1 || f[0].Path != bad || !strings.Contains(f[0].Message, "libbad.so") {
		t.Errorf("failures: %#v", f)
	}
}

// Goroutines failing in different ways at once, many times, on more OS threads than
// processors: each gets its own call's message (the C API's thread-local last error would
// not be safe here, as a goroutine may move between threads between two cgo calls).
func TestConcurrentFailuresKeepTheirOwnMessages(t *testing.T) {
	h := loaded(t)
	cases := []struct {
		expr string
		want Status
		part string
	}{
		{"2 +", StatusParseError, "column"},
		{"1 / 0", StatusDivisionByZero, "div"},
		{"nosuch(1)", StatusParseError, "nosuch"},
		{"sqrt(0 - 1)", StatusDomainError, "sqrt"},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []string
	for g := 0; g < 16; g++ {
		c := cases[g%len(cases)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				_, err := h.Eval(c.expr)
				var e *Error
				if !errors.As(err, &e) || e.Status != c.want || !strings.Contains(e.Message, c.part) {
					mu.Lock()
					wrong = append(wrong, c.expr+": "+err.Error())
					mu.Unlock()
					return
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	if len(wrong) != 0 {
		t.Fatalf("%d goroutines got another call's error, e.g. %s", len(wrong), wrong[0])
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := to + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func TestHotReloadReportsLoadsReloadsAndRemovals(t *testing.T) {
	src := pluginDir(t)
	dir := t.TempDir()
	lib := filepath.Join(dir, "libadd.so")
	copyFile(t, filepath.Join(src, "libadd.so"), lib)
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.EnableHotReload(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LoadDir(dir); err != nil {
		t.Fatal(err)
	}
	op, err := h.Op("+")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()

	// The file is rewritten: a new version serves, the handle follows it.
	copyFile(t, filepath.Join(src, "libadd.so"), lib)
	events, err := h.ReloadFile(lib)
	if err != nil || len(events) == 0 || events[0].Kind != Reloaded || events[0].Plugin != "add" ||
		!strings.HasPrefix(events[0].Message, "reloaded add ") {
		t.Fatalf("reload: %v, %#v", err, events)
	}
	// The old version is unloaded once no call is in flight on it: now, or by the next change.
	unloaded := len(events) == 2 && events[1].Kind == Unloaded && events[1].Plugin == "add"
	if got, err := op.Call(2, 2); err != nil || got != 4 {
		t.Errorf("after the reload: %v, %v", got, err)
	}
	// A new file is loaded.
	sub := filepath.Join(dir, "libsub.so")
	copyFile(t, filepath.Join(src, "libsub.so"), sub)
	events, err = h.ReloadFile(sub)
	for _, e := range events {
		if e.Kind == Unloaded && e.Plugin == "add" && !unloaded {
			unloaded = true
			continue
		}
		if err != nil || e.Kind != Loaded || e.Plugin != "sub" || e.Path != sub {
			t.Fatalf("load: %v, %#v", err, events)
		}
	}
	if !unloaded {
		t.Errorf("the replaced version of add was not reported unloaded")
	}
	// A file that is not a plugin fails; nothing else changes.
	bad := filepath.Join(dir, "libbad.so")
	if err := os.WriteFile(bad, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	events, err = h.ReloadFile(bad)
	wantError(t, err, StatusLoadFailed, "libbad.so")
	if len(events) != 1 || events[0].Kind != Failed || events[0].Path != bad {
		t.Fatalf("failure: %#v", events)
	}
	// Removed: unloaded, and the handle says so.
	if err := os.Remove(lib); err != nil {
		t.Fatal(err)
	}
	events, err = h.RemoveFile(lib)
	if err != nil || len(events) == 0 || events[0].Kind != Removed || events[0].Plugin != "add" ||
		events[0].Path != lib {
		t.Fatalf("remove: %v, %#v", err, events)
	}
	for _, e := range events[1:] {
		if e.Kind != Unloaded || e.Plugin != "add" {
			t.Errorf("after the removal: %#v", e)
		}
	}
	_, err = op.Call(2, 2)
	wantError(t, err, StatusError, "unloaded")
	if got, err := h.Eval("5 - 3"); err != nil || got != 2 {
		t.Errorf("sub still serves: %v, %v", got, err)
	}
}

// Isolated through the configuration file: the plugins run in runner processes, and the
// calls give the same answers.
func TestPluginsRunIsolatedWhenTheConfigurationSaysSo(t *testing.T) {
	runner := os.Getenv("CALC_RUNNER")
	if runner == "" {
		t.Skip("CALC_RUNNER is not set")
	}
	config := filepath.Join(t.TempDir(), "calc.toml")
	text := "[isolation]\nall = true\nrunner = \"" + runner + "\"\n"
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LoadConfig(config); err != nil {
		t.Fatal(err)
	}
	if n, err := h.LoadDir(pluginDir(t)); err != nil || n < 8 {
		t.Fatalf("LoadDir: %d, %v", n, err)
	}
	if got, err := h.Eval("2 ^ 10 - max(3, 4) / 2"); err != nil || got != 1022 {
		t.Errorf("isolated: %v, %v", got, err)
	}
	_, err = h.Eval("1 / 0")
	wantError(t, err, StatusDivisionByZero, "div")
	// A batch crosses to the runner once, its columns and results copied over the pipe.
	div, err := h.Op("/")
	if err != nil {
		t.Fatal(err)
	}
	defer div.Close()
	out := make([]float64, 3)
	if err := div.CallBatch(out, []float64{1, 9, 5}, []float64{2, 3, 0.5}); err != nil ||
		out[0] != 0.5 || out[1] != 3 || out[2] != 10 {
		t.Errorf("isolated batch: %v, %v", out, err)
	}
	err = div.CallBatch(out, []float64{1, 9, 5}, []float64{2, 0, 1})
	if e := wantError(t, err, StatusDivisionByZero, "row 1: div"); e.Row != 1 {
		t.Errorf("isolated batch failed at row %d, want 1", e.Row)
	}
	wantError(t, h.LoadConfig(filepath.Join(t.TempDir(), "none.toml")), StatusInvalidArgument, "none.toml")
}
