"""The Python package against numpy in the same run: a batch of 1M pairs through
Expr.eval of "x + y" and through Op.batch of add over numpy arrays (read and written in
place) against numpy's own a + b into the same out array. Medians over rounds; each ratio the median of the two figures of the same round.

    python3 benchmarks/batch.py PLUGIN_DIR [--quick]     (CALC_HOST_LIB: a release build)
"""

import statistics
import sys
import time

import numpy as np

import calc_host


def rounds(n, candidates):
    figures = [[] for _ in candidates]
    for _ in range(n):
        for i, c in enumerate(candidates):
            figures[i].append(c())
    return figures


def row(what, ref, ours, reference, unit):
    ratio = statistics.median(o / r for o, r in zip(ours, reference))
    print(
        f"{what:<44} {statistics.median(ours):10.2f} {unit:<3} vs {ref:<28} "
        f"{statistics.median(reference):10.2f} {unit:<3} ratio {ratio:5.2f}x"
    )


def main():
    plugin_dir = sys.argv[1]
    quick = "--quick" in sys.argv
    n, pairs = (3, 10_000) if quick else (21, 1_000_000)
    with calc_host.Host() as host:
        host.load_dir(plugin_dir)
        expr = host.compile("x + y", "x", "y")
        a = np.arange(pairs, dtype=np.float64)
        b = np.full(pairs, 0.5)
        out = np.empty(pairs)

        add = host.op("add")

        def timed(fn):
            """fn(a, b, out=out) as a candidate: ns per pair, its last result checked."""

            def candidate():
                out[-1] = 0
                start = time.perf_counter_ns()
                fn(a, b, out=out)
                figure = (time.perf_counter_ns() - start) / pairs
                assert out[-1] == pairs - 1 + 0.5
                return figure

            return candidate

        numpy_add, calc_add, op_batch = timed(np.add), timed(expr.eval), timed(add.batch)
        batch = rounds(n, [numpy_add, calc_add, op_batch])

        print(
            f"Python package ({calc_host.version()}, numpy {np.__version__}), median of {n} rounds; "
            "ratio = median over rounds of the two figures of the same round"
        )
        row(f"Expr.eval x + y over {pairs} pairs", "numpy.add(a, b, out=out)", batch[1], batch[0], "ns")
        row(f"Op.batch add over {pairs} pairs", "numpy.add(a, b, out=out)", batch[2], batch[0], "ns")


if __name__ == "__main__":
    main()
