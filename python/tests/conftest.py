import os

import pytest


@pytest.fixture
def plugin_dir():
    """calc's example plugins, which the Rust test suite builds and names in CALC_PLUGIN_DIR."""
    d = os.environ.get("CALC_PLUGIN_DIR")
    if not d:
        pytest.skip("CALC_PLUGIN_DIR is not set: run through `cargo test -p calc-tests --test python`")
    return d


@pytest.fixture
def host(plugin_dir):
    import calc_host

    with calc_host.Host() as h:
        assert h.load_dir(plugin_dir) >= 8
        yield h
