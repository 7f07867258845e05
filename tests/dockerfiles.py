"""Reading the images' Dockerfiles without a Docker engine: stages, what a target is built
from, the units and packages it installs into /opt/venv, its command, ports and user.

Only the Dockerfile features the repository uses are understood (stages, ARG, COPY --from,
RUN with `&&`, JSON CMD, `${VAR}`, `$VAR` and `${VAR:+word}` in RUN); anything else in a
pip command fails loudly rather than being misread."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SERVICE_UNITS = ("registry", "inference", "router", "monitor")
# Every image's Dockerfile: one per deployable service unit, and Envoy's.
DOCKERFILES = {
    **{unit: ROOT / "services" / unit / "Dockerfile" for unit in SERVICE_UNITS},
    "envoy": ROOT / "deploy" / "envoy" / "Dockerfile",
}
VENV = "/opt/venv"
SERVICE_USER, SERVICE_UID = "modelhub", 10001
HOME = "/var/lib/modelhub"

_UNIT_PATH = re.compile(r"^\./services/(?P<unit>[a-z_]+)(?:\[(?P<extras>[^\]]*)\])?$")
_EXPANSION = re.compile(r"\$\{(\w+):\+([^}]*)\}|\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined


@dataclass
class Stage:
    name: str
    base: str  # a stage name, or an image with the global ARGs substituted
    instructions: list[Instruction] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def copies_from(self) -> list[tuple[str, str, str]]:
        """(stage, source, destination) of every COPY --from=<stage> in this stage."""
        copies = []
        for args in self.args("COPY"):
            words = args.split()
            flags = dict(w.removeprefix("--").partition("=")[::2] for w in words if w[:2] == "--")
            *sources, destination = [w for w in words if w[:2] != "--"]
            if "from" in flags:
                copies += [(flags["from"], source, destination) for source in sources]
        return copies

    def build_args(self, given: Mapping[str, str]) -> dict[str, str]:
        """The ARG values a RUN in this stage sees: given build args over the defaults."""
        values = {}
        for declaration in self.args("ARG"):
            name, _, default = declaration.partition("=")
            values[name] = given.get(name, default.strip('"'))
        return values


@dataclass(frozen=True)
class Install:
    """One `/opt/venv/bin/pip install` command: its units (services/<unit> paths, with
    their extras) and other requirements (names from an index)."""

    units: dict[str, frozenset[str]]
    requirements: list[str]
    options: list[str]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: dict[str, Stage]

    @property
    def text(self) -> str:
        return self.path.read_text()

    def lineage(self, target: str) -> list[Stage]:
        """The target and the stages it is built FROM, the target first."""
        stages = [self.stages[target]]
        while stages[-1].base in self.stages:
            stages.append(self.stages[stages[-1].base])
        return stages

    def closure(self, target: str) -> list[Stage]:
        """Every stage whose output the target holds: its lineage, and recursively the
        stages it COPYs from."""
        seen: dict[str, Stage] = {}
        pending = [target]
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            for stage in self.lineage(name):
                seen.setdefault(stage.name, stage)
                pending += [source for source, _, _ in stage.copies_from()]
        return list(seen.values())

    def final(self, target: str, keyword: str) -> str | None:
        """The last `keyword` instruction in effect for the target (CMD, USER, WORKDIR)."""
        for stage in self.lineage(target):
            found = stage.args(keyword)
            if found:
                return found[-1]
        return None

    def cmd(self, target: str) -> list[str]:
        command = self.final(target, "CMD")
        assert command is not None, f"{self.name}: {target} has no CMD"
        parsed: list[str] = json.loads(command)  # the exec form only
        return parsed

    def exposed(self, target: str) -> set[str]:
        return {
            port.split("/")[0]
            for stage in self.lineage(target)
            for args in stage.args("EXPOSE")
            for port in args.split()
        }

    def runs(self, target: str) -> Iterator[tuple[Stage, str]]:
        """(stage, shell command) for every RUN in the target's lineage, split at `&&`."""
        for stage in self.lineage(target):
            for args in stage.args("RUN"):
                for command in args.split("&&"):
                    yield stage, command.strip()

    def installs(self, target: str, build_args: Mapping[str, str] | None = None) -> list[Install]:
        """Every pip install into /opt/venv that the target's files come from."""
        installs = []
        for stage in self.closure(target):
            env = stage.build_args(build_args or {})
            for args in stage.args("RUN"):
                for command in args.split("&&"):
                    words = shlex.split(command)
                    if words[:2] == [f"{VENV}/bin/python", "-m"]:
                        words = [f"{VENV}/bin/pip", *words[3:]]
                    if words[:2] != [f"{VENV}/bin/pip", "install"]:
                        continue
                    installs.append(_install([_expand(w, env) for w in words[2:]]))
        return installs

    def units(
        self, target: str, build_args: Mapping[str, str] | None = None
    ) -> dict[str, set[str]]:
        """services/<unit> → extras, over every install into /opt/venv of the target."""
        units: dict[str, set[str]] = {}
        for install in self.installs(target, build_args):
            for unit, extras in install.units.items():
                units.setdefault(unit, set()).update(extras)
        return units

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    @property
    def targets(self) -> list[str]:
        """The images this Dockerfile builds: the stages no other stage builds on or copies
        from."""
        used = {stage.base for stage in self.stages.values()}
        used |= {source for stage in self.stages.values() for source, _, _ in stage.copies_from()}
        return [name for name in self.stages if name not in used]

    def creates_for_user(self, target: str, path: str) -> bool:
        """Whether the target's RUNs create `path` and give it to the service user."""
        path = re.escape(path)
        made = owned = False
        for _, command in self.runs(target):
            made |= bool(re.fullmatch(rf"mkdir -p (?:\S+\s+)*{path}(?:\s+\S+)*", command))
            owner = rf"(?:{SERVICE_USER}|{SERVICE_UID})(?::\S+)?"
            owned |= bool(re.fullmatch(rf"chown {owner} (?:\S+\s+)*{path}(?:\s+\S+)*", command))
        return made and owned


def _expand(word: str, env: Mapping[str, str]) -> str:
    """The shell's `${VAR:+word}`, `${VAR}` and `$VAR` (the only expansions used)."""

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return _expand(match.group(2), env) if env.get(match.group(1)) else ""
        return env.get(match.group(3) or match.group(4), "")

    expanded = _EXPANSION.sub(one, word)
    assert "$" not in expanded and "`" not in expanded, f"cannot expand {word!r}"
    return expanded


def _install(words: list[str]) -> Install:
    units: dict[str, frozenset[str]] = {}
    requirements, options = [], []
    for word in words:
        if word.startswith("-"):
            options.append(word)
            continue
        match = _UNIT_PATH.match(word)
        if match:
            extras = (match["extras"] or "").split(",")
            units[match["unit"]] = frozenset(e.strip() for e in extras if e.strip())
        else:
            assert "/" not in word, f"a path that is no unit: {word}"
            requirements.append(word)
    return Install(units, requirements, options)


@cache
def read(path: Path) -> Dockerfile:
    """The Dockerfile at `path`, parsed (continuation lines joined, comments dropped)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue  # Docker drops comment and empty lines inside a continuation too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        if pending + line:
            lines.append(pending + line)
        pending = ""
    assert not pending, f"{path}: a continuation runs past the end"
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", args)
            assert match, f"{path}: every stage is named: FROM {args}"
            base = _expand(match[1], global_args) if match[1] not in stages else match[1]
            assert match[2] not in stages, f"{path}: stage {match[2]} twice"
            current = stages[match[2]] = Stage(match[2], base)
        elif current is None:
            assert keyword == "ARG", f"{path}: {keyword} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default.strip('"')
        else:
            current.instructions.append(Instruction(keyword, args))
    return Dockerfile(path, global_args, stages)


def unit_of(path: Path) -> str | None:
    """The unit (services/<unit>/) a source file belongs to."""
    try:
        relative = path.resolve().relative_to(ROOT / "services")
    except ValueError:
        return None
    return relative.parts[0]


@cache
def dependencies(unit: str) -> list[str]:
    """services/<unit>/pyproject.toml's dependencies (PEP 508 strings)."""
    project = tomllib.loads((ROOT / "services" / unit / "pyproject.toml").read_text())["project"]
    deps: list[str] = project.get("dependencies", [])
    return deps


def optional_dependencies(unit: str) -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "services" / unit / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    return extras


def distribution(requirement: str) -> str:
    """The normalized distribution name a PEP 508 requirement names."""
    return canonicalize_name(Requirement(requirement).name)


def unit_of_distribution(name: str) -> str | None:
    """`modelhub-<unit>` → the unit whose pyproject names it."""
    for directory in (ROOT / "services").iterdir():
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text())["project"]
            if distribution(project["name"]) == name:
                return directory.name
    return None
