import os
import shutil
import threading

import numpy as np
import pytest

import calc_host
from calc_host import CalcError


def raises(status, part, fn, *args):
    with pytest.raises(CalcError) as info:
        fn(*args)
    assert info.value.status == status and part in info.value.message, info.value.message
    return info.value


def test_eval_and_call_use_c_rust_and_cpp_plugins(host):
    assert host.eval("2 + 3 * 4") == 14  # add (C), mul (Rust)
    assert host.eval("2 ^ 10 - max(3, 4) / 2") == 1022
    assert host.eval("cos(0)") == 1  # cpp_trig (C++)
    assert host.call("add", 2, 3) == 5
    assert host.call("*", 6, 7) == 42
    raises(calc_host.STATUS_PARSE_ERROR, "column", host.eval, "2 +")
    raises(calc_host.STATUS_DIVISION_BY_ZERO, "div", host.eval, "1 / 0")
    raises(calc_host.STATUS_NOT_FOUND, "nosuch", host.call, "nosuch", 1)


def test_an_op_is_resolved_once_and_checks_its_operands(host):
    add = host.op("+")
    assert add(1.5, 2.25) == 3.75
    raises(calc_host.STATUS_INVALID_ARGUMENT, "expects 2 operands, got 1", add, 1)
    assert add(2, 3) == 5  # ints are operands too
    biggest = host.op("max")
    assert biggest(*range(12)) == 11  # more operands than the per-thread cells hold
    assert biggest(7) == 7
    add.close()
    add.close()
    raises(calc_host.STATUS_NOT_FOUND, "nosuch", host.op, "nosuch")


def test_an_expression_runs_over_numpy_arrays_in_place(host):
    expr = host.compile("x * y + 1", "x", "y")
    x = np.arange(100_000, dtype=np.float64)
    y = np.full(100_000, 0.5)
    out = np.empty_like(x)
    result = expr.eval(x, y, out=out)
    assert result is out  # written in place
    np.testing.assert_array_equal(out, x * 0.5 + 1)
    fresh = expr.eval(x, y)
    np.testing.assert_array_equal(fresh, out)
    inv = host.compile("1 / x", "x")
    err = raises(calc_host.STATUS_DIVISION_BY_ZERO, "div", inv.eval, np.array([1.0, 2.0, 0.0]))
    assert err.row == 2
    assert len(inv.eval(np.empty(0))) == 0
    raises(calc_host.STATUS_INVALID_ARGUMENT, "1 columns for 2 variables", expr.eval, x)
    raises(calc_host.STATUS_INVALID_ARGUMENT, "float64", expr.eval, x.astype(np.float32), y)
    raises(calc_host.STATUS_INVALID_ARGUMENT, "contiguous", expr.eval, x[::2], y[::2])
    raises(calc_host.STATUS_INVALID_ARGUMENT, "rows", expr.eval, x, y[:10])


def test_an_op_runs_over_numpy_arrays_in_place(host):
    a = np.arange(100_000, dtype=np.float64) - 500
    b = 0.25 * (np.arange(100_000) % 7) + 1
    # add is C, mul Rust, atan2 C++; the oracle is the same operation one row at a time.
    for name in ["+", "*", "atan2"]:
        op = host.op(name)
        out = np.empty_like(a)
        assert op.batch(a, b, out=out) is out  # written in place
        rows = range(0, 100_000, 997)
        assert [out[i] for i in rows] == [op(a[i], b[i]) for i in rows]
        np.testing.assert_array_equal(op.batch(a, b), out)
    np.testing.assert_array_equal(host.op("+").batch(a, b), a + b)
    div = host.op("/")
    out = np.zeros(4)
    err = raises(
        calc_host.STATUS_DIVISION_BY_ZERO,
        "row 2: div (plugin div)",
        lambda: div.batch(np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 0, 1]), out=out),
    )
    assert err.row == 2 and list(out[:2]) == [0.5, 0.5]
    err = raises(calc_host.STATUS_INVALID_ARGUMENT, "expects 2 operands, got 1", div.batch, a)
    assert err.row == -1  # refused before any row
    raises(calc_host.STATUS_INVALID_ARGUMENT, "rows", div.batch, a, b[:10])
    raises(calc_host.STATUS_INVALID_ARGUMENT, "contiguous", div.batch, a[::2], b[::2])
    assert len(div.batch(np.empty(0), np.empty(0))) == 0


def test_plugins_are_listed_with_their_operations_and_interfaces(host):
    by_name = {p["name"]: p for p in host.plugins()}
    add = by_name["add"]
    assert add["version"] and add["path"].endswith("libadd.so") and add["abi_version"]
    assert [(o["name"], o["symbol"], o["max_arity"]) for o in add["operations"]] == [
        ("add", "+", 2)
    ]
    maxes = [o for o in by_name["stats"]["operations"] if o["name"] == "max"]
    assert maxes and maxes[0]["max_arity"] is None and maxes[0]["min_arity"] == 1
    shapes = os.environ.get("CALC_SHAPES_PLUGIN")
    if not shapes:
        pytest.skip("CALC_SHAPES_PLUGIN is not set")
    host.load_file(shapes)
    got = {p["name"]: p for p in host.plugins()}["shapes"]["interfaces"]
    assert [(i["id"], i["major"], i["minor"], i["bytes"]) for i in got] == [
        ("calc-tests.shape", 1, 1, False),
        ("calc-tests.counter", 2, 0, False),
        ("calc-tests.text", 1, 0, True),
    ]
    assert all(i["vtable_size"] > 0 for i in got)


def test_load_failures_are_listed(tmp_path):
    bad = tmp_path / "libbad.so"
    bad.write_bytes(b"not a library")
    with calc_host.Host() as h:
        raises(calc_host.STATUS_LOAD_FAILED, "libbad.so", h.load_file, bad)
        [(path, message)] = h.failures()
        assert path == str(bad) and "libbad.so" in message


def test_concurrent_failures_keep_their_own_messages(host):
    cases = [
        ("2 +", calc_host.STATUS_PARSE_ERROR, "column"),
        ("1 / 0", calc_host.STATUS_DIVISION_BY_ZERO, "div"),
        ("sqrt(0 - 1)", calc_host.STATUS_DOMAIN_ERROR, "sqrt"),
    ]
    wrong = []

    def work(expr, status, part):
        for _ in range(300):
            try:
                host.eval(expr)
                wrong.append(expr + ": no error")
            except CalcError as e:
                if e.status != status or part not in e.message:
                    wrong.append(f"{expr}: {e.message}")

    threads = [threading.Thread(target=work, args=cases[i % 3]) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def install(src, dst):
    tmp = str(dst) + ".tmp"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def test_hot_reload_reports_loads_reloads_and_removals(plugin_dir, tmp_path):
    lib = tmp_path / "libadd.so"
    install(os.path.join(plugin_dir, "libadd.so"), lib)
    with calc_host.Host() as h:
        h.enable_hot_reload()
        h.load_dir(tmp_path)
        add = h.op("+")
        install(os.path.join(plugin_dir, "libadd.so"), lib)
        events = h.reload_file(lib)
        assert events[0]["kind"] == "reloaded" and events[0]["plugin"] == "add"
        assert events[0]["message"].startswith("reloaded add ")
        assert add(2, 2) == 4
        sub = tmp_path / "libsub.so"
        install(os.path.join(plugin_dir, "libsub.so"), sub)
        events = h.reload_file(sub)
        kinds = [(e["kind"], e["plugin"]) for e in events]
        assert ("loaded", "sub") in kinds
        assert set(kinds) <= {("loaded", "sub"), ("unloaded", "add")}
        os.remove(lib)
        events = h.remove_file(lib)
        assert (events[0]["kind"], events[0]["plugin"], events[0]["path"]) == (
            "removed", "add", str(lib))
        raises(calc_host.STATUS_ERROR, "unloaded", add, 2, 2)
        assert h.eval("5 - 3") == 2


def test_plugins_run_isolated_when_the_configuration_says_so(plugin_dir, tmp_path):
    runner = os.environ.get("CALC_RUNNER")
    if not runner:
        pytest.skip("CALC_RUNNER is not set")
    config = tmp_path / "calc.toml"
    config.write_text(f'[isolation]\nall = true\nrunner = "{runner}"\n')
    with calc_host.Host() as h:
        h.load_config(config)
        assert h.load_dir(plugin_dir) >= 8
        assert h.eval("2 ^ 10 - max(3, 4) / 2") == 1022
        raises(calc_host.STATUS_DIVISION_BY_ZERO, "div", h.eval, "1 / 0")
