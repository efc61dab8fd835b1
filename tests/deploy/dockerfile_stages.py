"""The Dockerfile, read by Docker's own parser and grouped into stages of instructions.

`dockerfile` (PyPI) runs BuildKit's Dockerfile parser, so line continuations, comments inside
them, parser directives, heredocs, flags and the JSON (exec) form are read as `docker build`
reads them. It gives a flat list of commands; this module only groups them into stages, turns
the flags into a dict and checks the few things Docker checks after parsing (conftest.py says
why this library).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Protocol

import dockerfile


class _Command(Protocol):
    """What `dockerfile.parse_string` gives for one instruction."""

    cmd: str
    """The instruction, as written (any case)."""
    json: bool
    """The arguments are a JSON array (exec form)."""
    original: str
    """The instruction's text, continuations joined."""
    start_line: int
    flags: tuple[str, ...]
    """`--name=value` words before the arguments."""
    value: tuple[str, ...]
    """The arguments: the JSON array's words, a shell form's command line, or the words the
    instruction has (ENV and LABEL: name, value, name, value...)."""


KEYWORDS = frozenset(name.upper() for name in dockerfile.all_cmds())
"""The instructions Docker knows (the parser takes any word; a build refuses others)."""


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    words: tuple[str, ...]
    line: int
    text: str
    exec_form: list[str] | None = None
    """The JSON array form's words, when the arguments are one."""

    @property
    def args(self) -> str:
        """The arguments after the flags, words joined by spaces (a shell form: its command
        line as Docker keeps it)."""
        return " ".join(self.words)


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


def _instruction(command: _Command) -> Instruction:
    keyword, line = command.cmd.upper(), command.start_line
    assert keyword in KEYWORDS, f"line {line}: unknown instruction {keyword}"
    flags: dict[str, str] = {}
    for flag in command.flags:
        name, _, value = flag.removeprefix("--").partition("=")
        flags[name] = value
    instruction = Instruction(keyword, flags, command.value, line, command.original)
    if keyword == "HEALTHCHECK":
        sub = command.value[0].upper()
        assert sub in ("CMD", "NONE"), f"line {line}: HEALTHCHECK {sub}"
        instruction.exec_form = list(command.value[1:]) if command.json else None
    elif command.json:
        instruction.exec_form = list(command.value)
    return instruction


def parse_dockerfile(text: str) -> list[Instruction]:
    commands: tuple[_Command, ...] = dockerfile.parse_string(text)
    return [_instruction(command) for command in commands]


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
    """The stage's ENV values, unquoted (and not expanded: `$PATH` stays as written)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        first = instruction.text.split(maxsplit=2)[1]
        assert "=" in first, f"line {instruction.line}: use ENV NAME=value, not the legacy form"
        names, values = instruction.words[::2], instruction.words[1::2]
        for name, value in zip(names, values, strict=True):
            env[name] = " ".join(shlex.split(value))
    return env
