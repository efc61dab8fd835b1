"""What the runtime stage must hold: the wheel's dependencies and nothing from Debian."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy import REPO, settings_view


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dependency_closure(root: str) -> set[str]:
    """The installed distributions `pip install <root>` brings, root included."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


RUNTIME_IMPORTS = (
    """
import json, sys
before = set(sys.modules)
import sfu.cli, sfu.server, redis.asyncio, uvloop
from sfu.app.factory import create_app
"""
    + settings_view.load_source("settings")
    + """create_app(settings)
new = (sys.modules[name] for name in set(sys.modules) - before)
files = {m.__name__: f for m in new if (f := getattr(m, "__file__", None))}
print(json.dumps(sorted(files.items())))
"""
)
"""Run with SFU_NODE_ID=image-check: prints the file of every module the app loads."""


def _installed_by(names: set[str]) -> set[Path]:
    """Every file these distributions installed."""
    files = set()
    for name in names:
        dist = importlib.metadata.distribution(name)
        files |= {Path(str(dist.locate_file(file))).resolve() for file in dist.files or []}
    return files


def test_runtime_imports_come_from_the_wheels_dependencies(clean_env: Path) -> None:
    """The image installs the wheel's dependencies only: every module `sfu serve` loads must
    come from the standard library, the project, or one of those (not, say, numpy from the
    test extras)."""
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_IMPORTS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=clean_env,
        env={**os.environ, "PYTHONPATH": str(REPO), "SFU_NODE_ID": "image-check"},
    )
    assert done.returncode == 0, done.stderr
    loaded: list[tuple[str, str]] = json.loads(done.stdout.strip().splitlines()[-1])
    allowed = _installed_by(_dependency_closure("cotept-sfu") - {"cotept-sfu"})
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    strays: dict[str, str] = {}
    for module, file in loaded:
        path = Path(file).resolve()
        from_stdlib = path.is_relative_to(stdlib) and "site-packages" not in path.parts
        if not (from_stdlib or path.is_relative_to(REPO / "sfu") or path in allowed):
            strays.setdefault(module.partition(".")[0], file)
    assert len(loaded) > 100, "the import probe saw nothing"
    assert not strays, f"loaded by `sfu serve`, not from a dependency of the wheel: {strays}"


SLIM_BASE_LIBRARIES = re.compile(
    r"(ld-linux[-\w.]*|libc|libm|libmvec|libdl|libpthread|librt|libutil|libresolv"
    r"|libgcc_s|libstdc\+\+|libz)\.so(\.[\d.]+)?"
)
"""Shared libraries python:3.11-slim-bookworm has without an apt-get (glibc, libgcc-s1,
libstdc++6 and zlib1g come with debian:bookworm-slim)."""


def _needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF file (x86_64, aarch64)."""
    with path.open("rb") as elf:
        header = elf.read(64)
        assert header[:4] == b"\x7fELF" and header[4:6] == b"\x02\x01", f"{path}: not ELF64 LE"
        shoff, (shentsize, shnum) = (
            struct.unpack_from("<Q", header, 0x28)[0],
            struct.unpack_from("<HH", header, 0x3A),
        )
        elf.seek(shoff)
        table = elf.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]

        def read(index: int) -> bytes:
            elf.seek(sections[index][4])
            return elf.read(sections[index][5])

        names = []
        for number, section in enumerate(sections):
            if section[1] != 6:  # SHT_DYNAMIC
                continue
            dynamic, strings = read(number), read(section[6])
            for tag, value in struct.iter_unpack("<qQ", dynamic):
                if tag == 1:  # DT_NEEDED
                    names.append(strings[value : strings.index(b"\0", value)].decode())
        return names


def test_native_extensions_need_nothing_beyond_the_slim_base() -> None:
    """Every shared object the wheel's dependencies install needs only libraries they bundle
    (manylinux `*.libs/`) or the slim base's: the runtime stage needs no apt-get."""
    missing: dict[str, set[str]] = {}
    checked = 0
    for name in sorted(_dependency_closure("cotept-sfu")):
        dist = importlib.metadata.distribution(name)
        objects = [f for f in dist.files or [] if re.search(r"\.so(\.[\d.]+)?$", f.name)]
        bundled = {f.name for f in objects if f.parts[0].endswith(".libs")}
        for file in objects:
            checked += 1
            for library in _needed(Path(str(dist.locate_file(file)))):
                if library not in bundled and not SLIM_BASE_LIBRARIES.fullmatch(library):
                    missing.setdefault(library, set()).add(f"{name}: {file}")
    assert checked > 10, "no shared objects found: is the project installed?"
    assert not missing, f"libraries the slim base lacks: {missing}"
