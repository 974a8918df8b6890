// Command calculator is the classic exercise of Go's plugin package, a calculator whose
// operators come from plugins loaded from a directory, on calc instead: the plugins are C,
// C++ and Rust shared libraries, and they are reloaded and unloaded while it runs.
//
//	go run ./example/calculator DIR
//
// It reads one expression per line from standard input and prints its value, or "error: "
// and why. Meanwhile it watches DIR: a library added, rebuilt (written in place or renamed
// into place) or deleted is loaded, reloaded or unloaded between two lines, and each change
// is printed as "event: " and what happened.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"calchost"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: calculator PLUGIN_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "calculator:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	host, err := calc.New()
	if err != nil {
		return err
	}
	defer host.Close()
	if err := host.EnableHotReload(); err != nil {
		return err
	}
	if _, err := host.LoadDir(dir); err != nil {
		return err
	}
	for _, f := range host.Failures() {
		fmt.Println("skipped:", f.Message)
	}
	var ops []string
	for _, p := range host.Plugins() {
		for _, op := range p.Operations {
			name := op.Name
			if op.Symbol != "" {
				name = op.Symbol
			}
			ops = append(ops, fmt.Sprintf("%s (%s %s)", name, p.Name, p.Version))
		}
	}
	sort.Strings(ops)
	fmt.Printf("operators: %s\n", strings.Join(ops, ", "))
	if err := host.Watch(true); err != nil {
		return err
	}

	lines := make(chan string)
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	// Changes are applied here, between two expressions, where the program can afford them.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			if v, err := host.Eval(line); err != nil {
				fmt.Println("error:", err)
			} else {
				fmt.Println(v)
			}
		case <-tick.C:
			events, err := host.PollChanges()
			for _, e := range events {
				fmt.Println("event:", e)
			}
			if err != nil {
				return err
			}
		}
	}
}
