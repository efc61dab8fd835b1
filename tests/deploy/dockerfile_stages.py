"""The Dockerfile, read into stages of instructions."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

KEYWORDS = frozenset(
    {
        *("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK"),
        *("LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"),
    }
)
JSON_FORM = frozenset({"CMD", "ENTRYPOINT", "RUN", "SHELL", "COPY", "ADD", "VOLUME"})


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str
    line: int
    exec_form: list[str] | None = None
    """The JSON array form's words, when the arguments are one."""


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash continuations; drop comments and blank lines (also inside a
    continuation, as Docker does)."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    assert not pending, f"line {start}: continuation runs past the end of the file"


def _split_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def _json_words(keyword: str, args: str, line: int) -> list[str] | None:
    if not args.startswith("["):
        return None
    try:
        words = json.loads(args)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"line {line}: {keyword} looks like JSON but is not: {exc}") from None
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), line
    return words


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions = []
    for line, logical in _logical_lines(text):
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        assert keyword in KEYWORDS, f"line {line}: unknown instruction {keyword}"
        flags, args = _split_flags(rest.strip())
        instruction = Instruction(keyword, flags, args, line)
        if keyword in JSON_FORM:
            instruction.exec_form = _json_words(keyword, args, line)
        elif keyword == "HEALTHCHECK":
            sub, _, cmd = args.partition(" ")
            assert sub.upper() in ("CMD", "NONE"), f"line {line}: HEALTHCHECK {sub}"
            instruction.exec_form = _json_words("HEALTHCHECK CMD", cmd.strip(), line)
        instructions.append(instruction)
    return instructions


def stages_of(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            assert len(words) in (1, 3), f"line {instruction.line}: FROM {instruction.args}"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages or instruction.keyword == "ARG", "only ARG may come before FROM"
            if stages:
                stages[-1].instructions.append(instruction)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            name, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: use ENV NAME=value, not the legacy form"
            env[name] = value
    return env
