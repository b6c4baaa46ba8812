"""Snapshot the public Python API of TensorRT releases, so tests can check our code against them without
TensorRT or a GPU.

Run from the repository root (needs network access to PyPI, gcc, and binutils' ``nm`` / ``readelf``)::

    .venv/bin/python tests/exporters/tensorrt_api/generate.py                     # the default versions
    .venv/bin/python tests/exporters/tensorrt_api/generate.py 10.14.1.48 11.1.0.1  # chosen ones

For each version it

1. downloads ``tensorrt-cu12-bindings==VERSION`` (about 1 MB: ``tensorrt_bindings/__init__.py`` plus the
   pybind11 extension ``tensorrt.so``) for *this* interpreter with ``pip download --no-deps``. The wheel
   with the real libraries (``tensorrt-cu12-libs``) lives on pypi.nvidia.com and is not needed;
2. builds stand-ins for the libraries the extension links against (``libnvinfer.so.N``,
   ``libnvonnxparser.so.N``, ``libnvinfer_plugin.so.N``): the TensorRT symbols the extension imports are
   plain C entry points (``createInferBuilder_INTERNAL``, ``getPluginRegistry``, ...), found with
   ``nm -D --undefined-only``; each stand-in defines them as functions that return 0 / NULL. Importing the
   module only registers its classes, so none of them is called - nothing may be *constructed*, but every
   class, enum, method, property and docstring can be read;
3. imports ``tensorrt_bindings`` (what ``import tensorrt`` re-exports: the ``tensorrt`` package is just
   ``from tensorrt_bindings import *`` and ``__version__``) in a subprocess with the stand-ins on
   ``LD_LIBRARY_PATH`` and writes ``<VERSION>.json`` beside this script.

Each JSON holds ``version``, ``wheel``, ``wheel_sha256``, ``python`` and ``names``: every public top-level
name of the module with its ``kind`` - ``class``, ``enum``, ``function``, ``constant`` (then ``type`` and
``value``). Classes and enums carry ``bases`` (resolved through the snapshot) and ``members``: their own
public attributes (plus ``__init__``), each ``{"kind": "method", "sig": [pybind11 signature lines]}``,
``{"kind": "property", "type": ..., "readonly": ...}``, ``{"kind": "constant", ...}`` or a nested
class / enum; ``__init__`` only where the class has a constructor. Enums list their values under
``values`` (``name`` and ``value``, common to every enum, are left out). Module paths in signatures
read ``tensorrt.X``. Read the files through ``tests/exporters/tensorrt_api/api.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "tensorrt-cu12-bindings"
MODULE = "tensorrt_bindings"
# the oldest 10.x, the newest 10.x, the first and the newest 11.x on PyPI when this was written
DEFAULT_VERSIONS = ("10.0.1", "10.16.1.11", "11.0.0.114", "11.4.0.106")
STUB_LIBS = re.compile(r"^lib(nvinfer|nvonnxparser|nvinfer_plugin)\.so\.\d+$")


# ------------------------------------------------------------------ download and stand-in libraries


def download(version: str, dest: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            str(dest),
            f"{PACKAGE}=={version}",
        ],
        check=True,
    )
    (wheel,) = dest.glob("*.whl")
    return wheel


def elf_needed(lib: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], check=True, capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def elf_undefined(lib: Path) -> list[str]:
    """Strong undefined dynamic symbols without a version tag (the versioned ones are libc / libstdc++)."""
    out = subprocess.run(
        ["nm", "-D", "--undefined-only", str(lib)], check=True, capture_output=True, text=True
    ).stdout
    names = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1]:
            names.append(parts[1])
    return names


def build_stubs(extension: Path, stub_dir: Path) -> dict[str, list[str]]:
    """Write and compile the stand-in libraries; return {library: [symbols it defines]}."""
    import ctypes

    process = ctypes.CDLL(None)  # python itself, libc, libdl: whatever resolves here needs no stub
    symbols = sorted(
        s for s in elf_undefined(extension) if not s.startswith(("Py", "_Py")) and not hasattr(process, s)
    )
    libs = [n for n in elf_needed(extension) if STUB_LIBS.match(n)]
    if not libs:
        raise SystemExit(f"{extension} links no libnvinfer*: {elf_needed(extension)}")
    libs.sort(key=lambda n: not n.startswith("libnvinfer.so"))  # every symbol goes into libnvinfer
    stub_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for i, lib in enumerate(libs):
        defined = symbols if i == 0 else []
        source = stub_dir / f"{lib}.c"
        source.write_text(
            "/* stand-in for TensorRT: import-only, every entry point returns 0 / NULL */\n"
            + "".join(f"void *{s}(void) {{ return 0; }}\n" for s in defined)
        )
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(stub_dir / lib), f"-Wl,-soname,{lib}", str(source)],
            check=True,
        )
        made[lib] = defined
    return made


# ------------------------------------------------------------------ introspection (runs in the subprocess)

_PREFIX = re.compile(r"\btensorrt_bindings\.(?:tensorrt\.)?")


def _clean(text: str) -> str:
    return _PREFIX.sub("tensorrt.", text)


def signatures(name: str, doc: str | None) -> list[str]:
    """pybind11's signature line(s) from a docstring: ``name(args) -> ret``, one per overload."""
    lines = (doc or "").splitlines()
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        pattern = re.compile(rf"^\d+\. ({re.escape(name)}\(.*)$")
        return [_clean(m.group(1)) for line in lines if (m := pattern.match(line))]
    if lines and lines[0].startswith(f"{name}("):
        return [_clean(lines[0])]
    return []


def _python_signature(name: str, fn) -> list[str]:
    try:
        return [f"{name}{inspect.signature(fn)}"]
    except (TypeError, ValueError):
        return []


def _type_name(obj) -> str:
    cls = type(obj)
    return _clean(f"{cls.__module__}.{cls.__qualname__}") if cls.__module__ != "builtins" else cls.__name__


def describe_callable(name: str, fn) -> dict:
    if inspect.isfunction(fn):  # defined in tensorrt_bindings/__init__.py
        return {"sig": _python_signature(name, fn), "python": True}
    return {"sig": signatures(name, getattr(fn, "__doc__", None))}


def describe_property(prop: property) -> dict:
    out: dict = {"kind": "property", "readonly": prop.fset is None}
    doc = getattr(prop.fget, "__doc__", None) or ""
    m = re.match(r"^\(.*\) -> (.+)$", doc.splitlines()[0] if doc else "")
    if m:
        out["type"] = _clean(m.group(1))
    elif inspect.isfunction(prop.fget):  # e.g. DataType.itemsize, added in __init__.py
        out["python"] = True
    return out


def is_enum(cls: type) -> bool:
    return isinstance(vars(cls).get("__members__"), property) or hasattr(cls, "__entries")


def describe_class(cls: type, module, depth: int = 0) -> dict:
    enum = is_enum(cls)
    out: dict = {"kind": "enum" if enum else "class"}
    bases = [
        _clean(f"{b.__module__}.{b.__qualname__}")[len("tensorrt.") :]
        for b in cls.__bases__
        if b.__module__.startswith(MODULE)
    ]
    if bases:
        out["bases"] = bases
    values = list(cls.__members__) if enum else []
    if enum:
        out["values"] = values
    members = {}
    for key, raw in vars(cls).items():
        if key in values or (key.startswith("_") and key != "__init__"):
            continue
        if enum and key in ("__init__", "name", "value"):  # every pybind11 enum has these
            continue
        value = getattr(cls, key)
        if isinstance(raw, property):
            members[key] = describe_property(raw)
        elif isinstance(value, type):
            if depth < 3:
                members[key] = describe_class(value, module, depth + 1)
                if f"{cls.__qualname__}.{key}" != value.__qualname__:  # e.g. Logger.Severity
                    members[key]["alias_of"] = _clean(f"{value.__module__}.{value.__qualname__}")
            else:
                members[key] = {"kind": "class"}
        elif callable(value) and not is_enum(type(value)):
            members[key] = {"kind": "method", **describe_callable(key, value)}
            if key == "__init__" and not members[key]["sig"]:  # "No constructor defined!"
                del members[key]
                continue
            if isinstance(raw, staticmethod) or type(raw).__name__ == "builtin_function_or_method":
                members[key]["static"] = True
        else:
            members[key] = describe_constant(value)
    if members:
        out["members"] = members
    return out


def describe_constant(value) -> dict:
    out = {"kind": "constant", "type": _type_name(value)}
    if is_enum(type(value)):
        out["value"] = value.name
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out["value"] = value
    return out


def introspect() -> dict:
    import importlib
    import types

    module = importlib.import_module(MODULE)
    names = {}
    for key in sorted(set(dir(module)) | {"__version__"}):
        if key.startswith("_") and key != "__version__":
            continue
        value = getattr(module, key)
        if isinstance(value, types.ModuleType):  # os, sys, ctypes, warnings, the .tensorrt extension
            continue
        if isinstance(value, type):
            names[key] = describe_class(value, module)
        elif callable(value):
            names[key] = {"kind": "function", **describe_callable(key, value)}
        else:
            names[key] = describe_constant(value)
    return {"version": module.__version__, "names": names}


# ------------------------------------------------------------------ one version


def dump(data: dict) -> str:
    """Sorted and compact, one top-level name a line (so a diff between versions reads by name)."""
    head = {k: v for k, v in data.items() if k != "names"}
    lines = [
        json.dumps(k) + ":" + json.dumps(v, sort_keys=True, separators=(",", ":"))
        for k, v in sorted(data["names"].items())
    ]
    body = json.dumps(head, sort_keys=True, separators=(",", ":"))[1:-1]
    return "{" + body + ',\n"names":{\n' + ",\n".join(lines) + "\n}}\n"


def snapshot(version: str, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix=f"trt-api-{version}-") as tmp:
        tmp = Path(tmp)
        wheel = download(version, tmp / "wheel")
        sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        site = tmp / "site"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
        (extension,) = (site / MODULE).glob("tensorrt*.so")
        stubs = build_stubs(extension, tmp / "stubs")
        env = {
            **os.environ,
            "PYTHONPATH": str(site),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LD_LIBRARY_PATH": os.pathsep.join(
                p for p in (str(tmp / "stubs"), os.environ.get("LD_LIBRARY_PATH")) if p
            ),
        }
        result = subprocess.run(
            [sys.executable, __file__, "--introspect"], env=env, check=True, capture_output=True, text=True
        )
        data = json.loads(result.stdout)
        if data["version"] != version:
            raise SystemExit(f"{wheel.name} reports version {data['version']}, expected {version}")
        data.update(
            wheel=wheel.name,
            wheel_sha256=sha256,
            python=f"{sys.version_info.major}.{sys.version_info.minor}",
            stubbed=stubs,
        )
    path = out_dir / f"{version}.json"
    path.write_text(dump(data))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", default=list(DEFAULT_VERSIONS))
    parser.add_argument("--out", type=Path, default=HERE, help="folder for <version>.json (default: here)")
    parser.add_argument("--introspect", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.introspect:
        json.dump(introspect(), sys.stdout)
        return
    for version in args.versions:
        path = snapshot(version, args.out)
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
