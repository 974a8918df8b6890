"""Every declaration the package hands cffi matches include/calc_host.h (and calc_plugin.h)."""

import re
from pathlib import Path

from calc_host._cdef import CDEF

ROOT = Path(__file__).resolve().parents[2]


def normalise(text):
    text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"\bstruct\s+", "", text)
    return " ".join(text.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").replace("*", " * ").replace(";", " ; ").split())


def test_every_function_is_declared_as_the_header_declares_it():
    header = normalise((ROOT / "include" / "calc_host.h").read_text())
    functions = [d.strip() for d in CDEF.split(";") if "(" in d and "typedef" not in d]
    assert len(functions) >= 30
    for f in functions:
        assert normalise(f + ";") in header, f


def test_every_struct_field_is_the_header_s():
    header = normalise(
        (ROOT / "include" / "calc_host.h").read_text()
        + (ROOT / "include" / "calc_plugin.h").read_text()
    )
    fields = re.findall(r"typedef struct (\w+) \{(.*?)\}", CDEF, flags=re.S)
    assert len(fields) >= 5
    for name, body in fields:
        for field in body.strip().split(";"):
            field = field.strip()
            if field:
                assert normalise(field + ";") in header, (name, field)


def test_every_constant_is_the_header_s():
    headers = (ROOT / "include" / "calc_host.h").read_text() + (
        ROOT / "include" / "calc_plugin.h"
    ).read_text()
    defines = re.findall(r"^#define \w+ \d+$", CDEF, flags=re.M)
    assert len(defines) >= 14
    for d in defines:
        assert re.search("^" + re.escape(d) + "$", headers, flags=re.M), d


def test_the_package_in_use_is_the_installed_one():
    import os

    import calc_host

    installed = os.environ.get("CALC_INSTALLED_AT")
    if not installed:
        import pytest

        pytest.skip("CALC_INSTALLED_AT is not set")
    assert Path(calc_host.__file__).resolve().is_relative_to(Path(installed).resolve())
