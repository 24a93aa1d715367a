"""Validating loader for ``matrix/*.yaml`` and ``workers/*.yaml``.

Every problem in a file is collected (file, line, key path, what is wrong) and reported
together; a file with any problem yields no objects at all, so nothing half-loads.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from . import yamlsource
from .model import (
    CAPABILITIES, Command, Leg, Matrix, Release, SecretRef, WorkerSet, WorkerSpec,
)
from .yamlsource import KeyPath, Problems

#: Leg and worker names become builder names, directory names and URL parts.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
#: Builder names Matrix Gate itself uses; a leg may not take them.
RESERVED_NAMES = frozenset({"release-gate", "release-publish", "gate"})
#: Informational worker properties that are not capabilities.
WORKER_INFO_KEYS = ("arch", "os", "location", "notes")


class DataError(ValueError):
    """A matrix or worker file is invalid; ``messages`` holds one line per problem."""

    def __init__(self, messages: list[str]):
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Checker:
    """Small typed accessors that record a problem instead of raising."""

    def __init__(self, problems: Problems):
        self.p = problems

    def mapping(self, value: Any, path: KeyPath, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.p.add(path, f"must be a mapping, got {_kind(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.p.add(path + (key,), f"unknown key {key!r} (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.p.add(path, f"missing required key {key!r}")
        return value

    def string(self, value: Any, path: KeyPath, *, empty_ok: bool = False) -> str | None:
        if not isinstance(value, str):
            self.p.add(path, f"must be a string, got {_kind(value)}")
            return None
        if not empty_ok and not value.strip():
            self.p.add(path, "must not be empty")
            return None
        return value

    def boolean(self, value: Any, path: KeyPath) -> bool | None:
        if not isinstance(value, bool):
            self.p.add(path, f"must be true or false, got {_kind(value)}")
            return None
        return value

    def integer(self, value: Any, path: KeyPath, minimum: int = 0) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.p.add(path, f"must be an integer, got {_kind(value)}")
            return None
        if value < minimum:
            self.p.add(path, f"must be at least {minimum}, got {value}")
            return None
        return value

    def duration(self, value: Any, path: KeyPath) -> float | None:
        """Seconds as a number, or a string like ``90s``, ``30m``, ``2h``."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and DURATION_RE.fullmatch(value.strip()):
            number, unit = DURATION_RE.fullmatch(value.strip()).groups()
            seconds = float(number) * {"s": 1, "m": 60, "h": 3600, None: 1}[unit]
        else:
            self.p.add(path, f"must be a duration (seconds, or like 90s, 30m, 2h), got {value!r}")
            return None
        if not math.isfinite(seconds):
            self.p.add(path, f"must be a finite duration, got {value!r}")
            return None
        if seconds <= 0:
            self.p.add(path, "must be greater than zero")
            return None
        return seconds

    def name(self, value: Any, path: KeyPath) -> str | None:
        text = self.string(value, path)
        if text is not None and not NAME_RE.fullmatch(text):
            self.p.add(path, f"{text!r} is not a safe name: use lowercase letters, digits and '-', "
                             "starting with a letter or digit, at most 50 characters")
            return None
        return text

    def listof(self, value: Any, path: KeyPath, item: Callable[[Any, KeyPath], Any]) -> list | None:
        if not isinstance(value, list):
            self.p.add(path, f"must be a list, got {_kind(value)}")
            return None
        items = [item(v, path + (i,)) for i, v in enumerate(value)]
        return None if any(i is None for i in items) else items


def _check_duplicates(items: Any, key: str, what: str, problems: Problems) -> None:
    """Duplicate names, checked on the raw data so an invalid entry still counts."""
    if not isinstance(items, list):
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.add((key, index, "name"), f"duplicate {what} name {name!r} (first at {key}[{seen[name]}])")
        seen.setdefault(name, index)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


# --- the matrix -------------------------------------------------------------------------

LEG_KEYS = ("name", "components", "covers", "requires", "commands", "env", "timeout",
            "artifacts", "enabled", "on_request", "run_for_tags", "wait_for_worker",
            "max_attempts", "allow_tcg")
DEFAULT_KEYS = ("timeout", "wait_for_worker", "max_attempts")


def _load(path: Path, parse: Callable[[Any, Problems], Any]):
    """Read and parse one file; any problem at all raises DataError with all of them."""
    data, problems = yamlsource.load(path, _display(path))
    if problems:
        raise DataError(problems.messages)
    parsed = parse(data, problems)
    if problems:
        raise DataError(problems.messages)
    return parsed


def load_matrix(path: Path) -> Matrix:
    return _load(path, parse_matrix)


def parse_matrix(data: Any, problems: Problems) -> Matrix | None:
    c = _Checker(problems)
    top = c.mapping(data, (), ("version", "platform", "defaults", "legs", "release"), ("version", "legs"))
    if top is None:
        return None
    if "version" in top and (type(top["version"]) is not int or top["version"] != 1):
        problems.add(("version",), f"unsupported version {top['version']!r} (this Matrix Gate reads version 1)")
    platform = c.string(top.get("platform", "platform"), ("platform",)) or "platform"
    defaults = {"timeout": 1800, "wait_for_worker": 1800.0, "max_attempts": 2}
    if "defaults" in top and c.mapping(top["defaults"], ("defaults",), DEFAULT_KEYS) is not None:
        d = top["defaults"]
        if "timeout" in d:
            defaults["timeout"] = c.integer(d["timeout"], ("defaults", "timeout"), 1) or 1800
        if "wait_for_worker" in d:
            defaults["wait_for_worker"] = c.duration(d["wait_for_worker"], ("defaults", "wait_for_worker")) or 1800.0
        if "max_attempts" in d:
            defaults["max_attempts"] = c.integer(d["max_attempts"], ("defaults", "max_attempts"), 1) or 2
    legs: list[Leg] = []
    raw_legs = top.get("legs")
    if isinstance(raw_legs, list) and not raw_legs:
        problems.add(("legs",), "must declare at least one leg")
    elif "legs" in top:
        parsed = c.listof(raw_legs, ("legs",), lambda v, p: _parse_leg(c, v, p, defaults))
        legs = parsed or []
    _check_duplicates(raw_legs, "legs", "leg", problems)
    release = _parse_release(c, top.get("release", {}), ("release",))
    if problems:
        return None
    return Matrix(source=problems.source, platform=platform, legs=tuple(legs), release=release)


def _parse_leg(c: _Checker, value: Any, path: KeyPath, defaults: dict) -> Leg | None:
    before = len(c.p.messages)
    raw = c.mapping(value, path, LEG_KEYS, ("name", "components", "covers", "commands"))
    if raw is None:
        return None
    name = c.name(raw.get("name"), path + ("name",)) if "name" in raw else None
    if name in RESERVED_NAMES:
        c.p.add(path + ("name",), f"{name!r} is reserved for Matrix Gate's own builders")
    components = None
    if "components" in raw:
        components = c.listof(raw["components"], path + ("components",), c.string)
        if components is not None and len(components) != 2:
            c.p.add(path + ("components",), f"must name exactly two components (from, to), got {len(components)}")
    covers = c.string(raw.get("covers"), path + ("covers",)) if "covers" in raw else None
    requires = c.listof(raw.get("requires", []), path + ("requires",), lambda v, p: _capability(c, v, p))
    commands = None
    if "commands" in raw:
        if isinstance(raw["commands"], list) and not raw["commands"]:
            c.p.add(path + ("commands",), "must list at least one command")
        else:
            commands = c.listof(raw["commands"], path + ("commands",), lambda v, p: _command(c, v, p))
    env = _env(c, raw.get("env", {}), path + ("env",))
    timeout = c.integer(raw["timeout"], path + ("timeout",), 1) if "timeout" in raw else defaults["timeout"]
    artifacts = c.listof(raw.get("artifacts", []), path + ("artifacts",), lambda v, p: _relative_path(c, v, p))
    enabled = c.boolean(raw.get("enabled", True), path + ("enabled",))
    on_request = c.boolean(raw.get("on_request", False), path + ("on_request",))
    run_for_tags = c.listof(raw.get("run_for_tags", []), path + ("run_for_tags",), c.string)
    wait = (c.duration(raw["wait_for_worker"], path + ("wait_for_worker",))
            if "wait_for_worker" in raw else defaults["wait_for_worker"])
    attempts = (c.integer(raw["max_attempts"], path + ("max_attempts",), 1)
                if "max_attempts" in raw else defaults["max_attempts"])
    allow_tcg = c.boolean(raw.get("allow_tcg", False), path + ("allow_tcg",))
    if len(c.p.messages) > before:
        return None
    return Leg(name=name, components=tuple(components), covers=covers, commands=tuple(commands),
               requires=frozenset(requires), env=env, timeout=timeout, artifacts=tuple(artifacts),
               enabled=enabled, on_request=on_request, run_for_tags=tuple(run_for_tags),
               wait_for_worker=wait, max_attempts=attempts, allow_tcg=allow_tcg)


def _capability(c: _Checker, value: Any, path: KeyPath) -> str | None:
    text = c.string(value, path)
    if text is not None and text not in CAPABILITIES:
        c.p.add(path, f"unknown capability {text!r} (known: {', '.join(CAPABILITIES)})")
        return None
    return text


def _command(c: _Checker, value: Any, path: KeyPath) -> Command | None:
    if isinstance(value, str):
        text = c.string(value, path)
        return Command(name=_command_name(text), run=text) if text else None
    raw = c.mapping(value, path, ("name", "run", "timeout"), ("run",))
    if raw is None or "run" not in raw:
        return None
    run = c.string(raw["run"], path + ("run",))
    name = c.string(raw["name"], path + ("name",)) if "name" in raw else (run and _command_name(run))
    timeout = c.integer(raw["timeout"], path + ("timeout",), 1) if "timeout" in raw else None
    if name is not None and len(name) > 50:
        c.p.add(path + ("name",), f"step names are at most 50 characters (Buildbot's limit), got {len(name)}")
        return None
    if run is None or name is None or ("timeout" in raw and timeout is None):
        return None
    return Command(name=name, run=run, timeout=timeout)


def _command_name(run: str) -> str:
    """A short step name from a command line: its first words."""
    words = run.split()
    return " ".join(words[:4])[:50]


def _env(c: _Checker, value: Any, path: KeyPath) -> dict:
    if not isinstance(value, dict):
        c.p.add(path, f"must be a mapping of NAME: value, got {_kind(value)}")
        return {}
    env: dict[str, str | SecretRef] = {}
    for key, item in value.items():
        where = path + (key,)
        if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
            c.p.add(where, f"{key!r} is not a valid environment variable name")
        elif isinstance(item, dict):
            raw = c.mapping(item, where, ("secret",), ("secret",))
            secret = raw and raw.get("secret")
            if isinstance(secret, str) and SECRET_NAME_RE.fullmatch(secret):
                env[key] = SecretRef(secret)
            elif raw is not None and "secret" in raw:
                c.p.add(where + ("secret",), f"{secret!r} is not a valid secret name")
        elif isinstance(item, (str, int, float)) and not isinstance(item, bool):
            env[key] = str(item)
        else:
            c.p.add(where, f"must be a string or {{secret: NAME}}, got {_kind(item)}")
    return env


def _relative_path(c: _Checker, value: Any, path: KeyPath) -> str | None:
    text = c.string(value, path)
    if text is None:
        return None
    if text.startswith("/") or ".." in Path(text).parts:
        c.p.add(path, f"{text!r} must be a path inside the checkout (relative, no '..')")
        return None
    return text


def _parse_release(c: _Checker, value: Any, path: KeyPath) -> Release:
    raw = c.mapping(value, path, ("tags", "publish", "allow_skip_plasma"))
    if raw is None:
        return Release()
    tags = c.string(raw.get("tags", "v*"), path + ("tags",)) or "v*"
    publish = c.listof(raw.get("publish", []), path + ("publish",), lambda v, p: _command(c, v, p)) or []
    allow = c.boolean(raw.get("allow_skip_plasma", False), path + ("allow_skip_plasma",))
    return Release(tags=tags, publish=tuple(publish), allow_skip_plasma=bool(allow))


# --- workers ------------------------------------------------------------------------------

WORKER_KEYS = ("name", "properties", "max_builds", "local", "password_secret")


def load_workers(path: Path) -> WorkerSet:
    return _load(path, parse_workers)


def parse_workers(data: Any, problems: Problems) -> WorkerSet | None:
    c = _Checker(problems)
    top = c.mapping(data, (), ("version", "workers"), ("version", "workers"))
    if top is None:
        return None
    if "version" in top and (type(top["version"]) is not int or top["version"] != 1):
        problems.add(("version",), f"unsupported version {top['version']!r} (this Matrix Gate reads version 1)")
    workers = []
    if isinstance(top.get("workers"), list) and not top["workers"]:
        problems.add(("workers",), "must declare at least one worker")
    elif "workers" in top:
        workers = c.listof(top["workers"], ("workers",), lambda v, p: _parse_worker(c, v, p)) or []
    _check_duplicates(top.get("workers"), "workers", "worker", problems)
    if problems:
        return None
    return WorkerSet(source=problems.source, workers=tuple(workers))


def _parse_worker(c: _Checker, value: Any, path: KeyPath) -> WorkerSpec | None:
    before = len(c.p.messages)
    raw = c.mapping(value, path, WORKER_KEYS, ("name",))
    if raw is None:
        return None
    name = c.name(raw.get("name"), path + ("name",)) if "name" in raw else None
    if name == "gate":
        c.p.add(path + ("name",), "'gate' is reserved for the master's own orchestration worker")
    properties = _worker_properties(c, raw.get("properties", {}), path + ("properties",))
    max_builds = raw.get("max_builds", 1)
    if max_builds is not None:
        max_builds = c.integer(max_builds, path + ("max_builds",), 1)
    local = c.boolean(raw.get("local", False), path + ("local",))
    secret = raw.get("password_secret", f"worker-{name}")
    if not isinstance(secret, str) or not SECRET_NAME_RE.fullmatch(secret):
        c.p.add(path + ("password_secret",), f"{secret!r} is not a valid secret name")
    if len(c.p.messages) > before:
        return None
    return WorkerSpec(name=name, properties=properties, max_builds=max_builds, local=local,
                      password_secret=secret)


def _worker_properties(c: _Checker, value: Any, path: KeyPath) -> dict:
    raw = c.mapping(value, path, CAPABILITIES + WORKER_INFO_KEYS)
    if raw is None:
        return {}
    for key in CAPABILITIES:
        if key in raw:
            c.boolean(raw[key], path + (key,))
    for key in WORKER_INFO_KEYS:
        if key in raw:
            c.string(raw[key], path + (key,))
    return dict(raw)


def legs_without_workers(matrix: Matrix, workers: WorkerSet) -> list[str]:
    """Warnings for enabled legs that no declared worker can run: a silent wait otherwise."""
    warnings = []
    for leg in matrix.enabled_legs:
        if not workers.capable_of(leg):
            warnings.append(
                f"leg {leg.name!r} requires {', '.join(sorted(leg.requires))} but no worker in "
                f"{workers.source} declares all of them: its builds can never start on a real "
                "worker (dry runs still run)")
    return warnings
