"""aiortc and aioice internals are touched only in sfu/media (through its seams).

Every module under sfu/ outside sfu/media, and under bench/, is parsed; each of these is an
offence:
- a call of `internal(...)` or `set_internal(...)` (sfu/media/internals.py's accessors);
- an attribute whose name starts with one underscore (`x._y`, `x.__y`; not `x.__y__`) on
  anything but `self` or `cls`; on `super()`, only one that aiortc or aioice defines (an
  override of another library's method calling its base, as sfu/api/signalling.py's
  SignallingSocket does aiohttp's, is that library's seam, tested in test_seams.py);
- a string literal starting with `_RTC` (an aiortc name-mangled attribute), or naming any
  private attribute or method of an aiortc or aioice class (outside `__slots__`);
- a private name given as a string to `getattr`/`setattr`/`hasattr`/`delattr`, or as a key
  of `vars(...)` (an instance attribute shadowing a private method).

Not covered: a subclass of an aiortc/aioice class reaching its base's state through `self`
(sfu/ice/connection.py's SfuConnection; its names are in the seams registry too).

Tests (but test_seams.py and this module) are held to less: they may use the registry's
accessors with a name it lists, but reach no other private aiortc/aioice name.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
from pathlib import Path

import aioice
import aiortc

from sfu.media import internals, seams

ROOT = Path(__file__).resolve().parents[2]
SFU = ROOT / "sfu"
ALLOWED = SFU / "media"
ACCESSORS = frozenset({"internal", "set_internal"})
ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _private_string(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_private(node.value):
        return node.value
    return None


@functools.cache
def library_private_names() -> frozenset[str]:
    """Every private attribute and method name of the classes of aiortc and aioice (defined
    on the class, or set or read by one of its functions)."""
    names: set[str] = set()
    for package in (aiortc, aioice):
        for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(module_info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if not cls.__module__.startswith(package.__name__):
                    continue
                for name, value in vars(cls).items():
                    names.add(name)
                    code = getattr(value, "__code__", None)
                    if code is not None:
                        names.update(code.co_names)
    return frozenset(n for n in names if _is_private(n))


def _is_super(node: ast.AST) -> bool:
    """`super()`."""
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def _slot_strings(tree: ast.AST) -> set[int]:
    """ids of the string nodes of `__slots__ = (...)` assignments (a class's own names)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            found.update(id(n) for n in ast.walk(node.value))
    return found


def offences(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each private aiortc/aioice access in a parsed module."""
    found: list[tuple[int, str]] = []
    library = library_private_names()
    slots = _slot_strings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = _called_name(node)
            if called in ACCESSORS:
                found.append((node.lineno, f"{called}(...)"))
            elif called in ATTRIBUTE_BUILTINS and isinstance(node.func, ast.Name):
                name = _private_string(node.args[1]) if len(node.args) > 1 else None
                if name is not None:
                    found.append((node.lineno, f"{called}(..., {name!r})"))
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if _is_super(owner) and node.attr not in library:
                continue  # an override calling its base: not an aiortc/aioice one here
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("_RTC") or (node.value in library and id(node) not in slots):
                found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.Subscript):
            owner = node.value
            if (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "vars"
            ):
                name = _private_string(node.slice)
                if name is not None:
                    found.append((node.lineno, f"vars(...)[{name!r}]"))
    return found


def _outside_media() -> list[Path]:
    sfu = [p for p in SFU.rglob("*.py") if ALLOWED not in p.parents]
    return sorted([*sfu, *(ROOT / "bench").rglob("*.py")])


def test_no_aiortc_internals_outside_sfu_media_nor_in_bench() -> None:
    modules = _outside_media()
    assert len(modules) > 50  # the scan sees the package
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in modules
        for line, what in sorted(offences(ast.parse(path.read_text(), str(path))))
    ]
    assert not offenders, "private aiortc/aioice access outside sfu/media:\n" + "\n".join(offenders)


def test_the_scan_recognises_each_kind_of_offence() -> None:
    source = "\n".join(
        [
            "internal(receiver, 'x')",
            "media.set_internal(dtls, 'y', 1)",
            "sender._ssrc",
            "receiver.transport._rtp_router.ssrc_table",
            "super()._send_rtcp(packet)",
            "name = '_RTCRtpReceiver__codecs'",
            "getattr(transport, '_ssl', None)",
            "vars(sender)['_send_keyframe'] = callback",
            "attributes['_handle_rtp_packet'] = counting",
        ]
    )
    lines = {line for line, _ in offences(ast.parse(source))}
    assert lines == set(range(1, 10))
    allowed = "\n".join(
        [
            "self._dtls = dtls",
            "cls._instances",
            "type(track).__name__",
            "getattr(track, 'kind', None)",
            "vars(options)['count']",
            "text = 'a _private word'",
            "__slots__ = ('_id', '_queue')",
            "super()._reset_heartbeat()",
        ]
    )
    assert offences(ast.parse(allowed)) == []


# --- tests reach aiortc internals only through sfu/media ---------------------------------------

SEAM_TESTS = frozenset({"test_seams.py", "test_boundaries.py"})
"""Test modules that test the seams (and this scan) themselves, and may touch anything."""


def registered_names() -> frozenset[str]:
    """The private names of the seams registry: internals.py's lists and the names
    check_seams() verifies."""
    names = {
        name
        for value in vars(internals).values()
        if isinstance(value, tuple)
        for name in value
        if isinstance(name, str)
    }
    check = ast.parse(inspect.getsource(seams.check_seams))
    names.update(
        node.value
        for node in ast.walk(check)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )
    return frozenset(n for n in names if _is_private(n))


def offences_in_tests(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each aiortc/aioice private a test module reaches other than through
    sfu/media: `internal()`/`set_internal()` with a name the registry lists is allowed."""
    library = library_private_names()
    registered = registered_names()
    through_accessor: set[int] = set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node) in ACCESSORS and len(node.args) > 1:
            name = node.args[1]
            through_accessor.add(id(name))
            if not (isinstance(name, ast.Constant) and name.value in registered):
                found.append((node.lineno, f"{_called_name(node)}(..., {ast.unparse(name)})"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in library:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in through_accessor
            and (node.value in library or node.value.startswith("_RTC"))
        ):
            found.append((node.lineno, repr(node.value)))
    return found


def test_tests_reach_aiortc_internals_only_through_sfu_media() -> None:
    tests = ROOT / "tests"
    modules = sorted(p for p in tests.rglob("*.py") if p.name not in SEAM_TESTS)
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in modules
        for line, what in sorted(offences_in_tests(ast.parse(path.read_text(), str(path))))
    ]
    assert not offenders, "aiortc/aioice internals reached around sfu/media:\n" + "\n".join(
        offenders
    )


def test_the_test_scan_allows_registered_names_only() -> None:
    source = "\n".join(
        [
            "internal(dtls, '_rx_srtp')",
            "internal(dtls, '_not_in_the_registry')",
            "sender._ssrc",
            "vars(receiver)['_handle_rtp_packet'] = spy",
            "store._client",
        ]
    )
    assert {line for line, _ in offences_in_tests(ast.parse(source))} == {2, 3, 4}
