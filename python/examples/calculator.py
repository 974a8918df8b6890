"""The calculator whose operators are plugins, from Python: loads a directory of calc plugins
(C, C++ and Rust), evaluates one expression per line of standard input, and between two
lines applies what changed in the directory (added, rebuilt or deleted libraries), printing
each change as "event: ...".

    python3 examples/calculator.py PLUGIN_DIR
"""

import sys

import calc_host


def main():
    if len(sys.argv) != 2:
        print("usage: calculator.py PLUGIN_DIR", file=sys.stderr)
        return 2
    with calc_host.Host() as host:
        host.enable_hot_reload()
        host.load_dir(sys.argv[1])
        for path, message in host.failures():
            print("skipped:", message)
        ops = sorted(
            f"{op['symbol'] or op['name']} ({p['name']} {p['version']})"
            for p in host.plugins()
            for op in p["operations"]
        )
        print("operators:", ", ".join(ops), flush=True)
        host.watch(True)
        for line in sys.stdin:
            for event in host.poll_changes():
                print("event:", event["message"])
            line = line.strip()
            if not line:
                continue
            try:
                value = host.eval(line)
                print(int(value) if value.is_integer() else value, flush=True)
            except calc_host.CalcError as e:
                print("error:", e.message, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
