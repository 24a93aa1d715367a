"""Release evidence for an integration-matrix gate run.

The platform's release process wants the logs of a matrix run copied to
``docs/evidence/integration-matrix-<timestamp>/`` and referenced from the
release notes.  This module writes that directory (plus a reproducible
``.tar.gz`` bundle of it) and verifies one later, so a reviewer can tell
whether the evidence is complete and unaltered.

Pure Python on purpose: the master-side step gathers logs through Buildbot's
data API and hands them over as ``GateEvidence``; nothing here needs Twisted.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import NamedTuple

SCHEMA_VERSION = 1
DIR_PREFIX = "integration-matrix-"
BUNDLE_SUFFIX = ".tar.gz"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
NOTES = "release-notes.md"
# The release notes point at the copy inside the platform repository, not at
# wherever the master happened to write the evidence.
RELEASE_EVIDENCE_DIR = "docs/evidence"
CHUNK = 1 << 20
# Level 1 compresses build logs about 3x at ~5x the speed of the default
# level 6, which keeps bundling 50 MB of logs well under a second.
BUNDLE_COMPRESSLEVEL = 1
# manifest.json and SHA256SUMS are parsed in memory; a bundle claiming larger
# ones is hostile or broken, not evidence.
MAX_METADATA_BYTES = 64 << 20
RESERVED_NAMES = frozenset({MANIFEST, SUMS, NOTES})
LEG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SUMS_LINE_RE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
PASSING_RESULTS = frozenset({"success", "warnings"})


@dataclass
class LegEvidence:
    name: str
    result: str
    worker: str | None
    capabilities: dict | None
    started_at: float | None
    complete_at: float | None
    build_url: str | None
    # relative name inside the leg's folder -> content, or a file to stream
    files: dict[str, bytes | Path]
    note: str = ""


@dataclass
class GateEvidence:
    tag: str | None
    revision: str
    repository: str
    gate_url: str | None
    result: str
    started_at: float | None
    complete_at: float | None
    legs: list[LegEvidence]
    skipped: dict[str, str]
    blocking: list[str]


@dataclass
class EvidenceRecord:
    directory: Path
    bundle: Path
    name: str
    manifest: dict


@dataclass(frozen=True)
class FileEntry:
    """One written file: path relative to the evidence directory."""

    path: str
    size: int
    sha256: str


# Each leg with its validated (relative name, content) pairs, sorted by name.
Plan = list[tuple[LegEvidence, list[tuple[str, bytes | Path]]]]


class EvidenceError(Exception):
    """The input to verify() cannot be read as evidence at all."""


# ---------------------------------------------------------------- writing


def write_evidence(root: Path, gate: GateEvidence,
                   now: datetime | None = None) -> EvidenceRecord:
    """Write the evidence directory and bundle for *gate* under *root*.

    Everything is written into a hidden temporary sibling and renamed into
    place at the end, so the final name only ever holds complete evidence.
    """
    plan = _plan_files(gate.legs)
    stamp = _utc(now or datetime.now(timezone.utc))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        name = _free_name(root, DIR_PREFIX + stamp.strftime("%Y%m%dT%H%M%SZ"))
        work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
        try:
            manifest, entries = _write_tree(work, name, gate, plan, stamp)
            tmp_bundle = _write_bundle(work, name, entries, stamp, root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        directory, bundle = root / name, root / (name + BUNDLE_SUFFIX)
        work.chmod(0o755)  # mkdtemp makes it private; evidence is for reading
        os.rename(work, directory)
        _link_into_place(tmp_bundle, bundle)
        _fsync_dir(root)
    return EvidenceRecord(directory=directory, bundle=bundle, name=name,
                          manifest=manifest)


def _plan_files(legs: list[LegEvidence]) -> Plan:
    """Validate every leg and file name before touching the disk."""
    seen: set[str] = set()
    plan = []
    for leg in legs:
        _check_leg_name(leg.name)
        if leg.name in seen:
            raise ValueError(f"duplicate leg {leg.name!r}")
        seen.add(leg.name)
        paths = {_check_relative(leg.name, rel): src for rel, src in leg.files.items()}
        _check_no_file_dir_clash(leg.name, paths)
        for rel, src in paths.items():
            if not isinstance(src, (bytes, Path)):
                raise TypeError(f"{leg.name}/{rel}: content must be bytes or Path, "
                                f"not {type(src).__name__}")
        plan.append((leg, sorted(paths.items())))
    return plan


def _check_leg_name(name: str) -> None:
    if not LEG_NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ValueError(f"invalid leg name {name!r}")


def _check_relative(leg: str, rel: str) -> str:
    """Return *rel* if it is a plain relative path that stays in the leg folder."""
    # Backslashes and control characters would be escaped by sha256sum, which
    # would make SHA256SUMS ambiguous to read back.
    bad_char = any(c == "\\" or ord(c) < 32 or c == "\x7f" for c in rel)
    if bad_char or not _safe_rel(rel):
        raise ValueError(f"leg {leg!r}: invalid file name {rel!r}")
    return rel


def _check_no_file_dir_clash(leg: str, paths: Iterable[str]) -> None:
    names = set(paths)
    for rel in names:
        for parent in PurePosixPath(rel).parents:
            if str(parent) in names:
                raise ValueError(f"leg {leg!r}: {parent} is both a file and a folder")


def _utc(moment: datetime) -> datetime:
    # A naive datetime is taken to be UTC already; the master works in UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise writers on *root* so two gates finishing in the same second
    cannot pick the same name.  flock() on the directory itself leaves no lock
    file behind in docs/evidence."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _free_name(root: Path, base: str) -> str:
    """*base*, or *base*-2, -3 …: the first name neither a directory nor a
    bundle uses yet (a lone bundle still holds its name)."""
    name, n = base, 1
    while (root / name).exists() or (root / (name + BUNDLE_SUFFIX)).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _write_tree(work: Path, name: str, gate: GateEvidence, plan: Plan,
                stamp: datetime) -> tuple[dict, list[FileEntry]]:
    """Write legs, release notes, manifest and SHA256SUMS; return the manifest
    and the entries of every file written (for the bundle)."""
    entries: list[FileEntry] = []
    legs = []
    for leg, files in plan:
        leg_entries = [_write_one(work, f"{leg.name}/{rel}", src) for rel, src in files]
        entries += leg_entries
        legs.append(_leg_manifest(leg, leg_entries))
    manifest = _gate_manifest(name, gate, stamp, legs)
    entries.append(_write_one(work, NOTES, release_notes(name, gate).encode()))
    entries.append(_write_one(work, MANIFEST, _dump_manifest(manifest)))
    entries.append(_write_one(work, SUMS, _sums_text(entries).encode()))
    return manifest, entries


def _write_one(work: Path, rel: str, src: bytes | Path) -> FileEntry:
    dst = work / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, bytes):
        with open(dst, "xb") as out:
            out.write(src)
            _sync(out)
        return FileEntry(rel, len(src), hashlib.sha256(src).hexdigest())
    size, digest = _copy_hashing(src, dst)
    return FileEntry(rel, size, digest)


def _copy_hashing(src: Path, dst: Path) -> tuple[int, str]:
    """Copy *src* to *dst* and hash it in the same pass (logs can be large)."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fin, open(dst, "xb") as fout:
        while n := fin.readinto(buf):
            digest.update(view[:n])
            fout.write(view[:n])
            size += n
        _sync(fout)
    return size, digest.hexdigest()


def _sync(fh: io.BufferedWriter) -> None:
    """Flush file data to disk before the directory is renamed into place;
    otherwise a power cut could leave the final name with empty files."""
    fh.flush()
    os.fsync(fh.fileno())


def _leg_manifest(leg: LegEvidence, entries: list[FileEntry]) -> dict:
    return {
        "name": leg.name,
        "result": leg.result,
        "worker": leg.worker,
        "capabilities": leg.capabilities,
        **_times(leg.started_at, leg.complete_at),
        "build_url": leg.build_url,
        "note": leg.note,
        "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in entries],
    }


def _gate_manifest(name: str, gate: GateEvidence, stamp: datetime, legs: list[dict]) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "generated_at": _iso(stamp),
        "tag": gate.tag,
        "revision": gate.revision,
        "repository": gate.repository,
        "gate_url": gate.gate_url,
        "result": gate.result,
        **_times(gate.started_at, gate.complete_at),
        "blocking": list(gate.blocking),
        "skipped": dict(gate.skipped),
        "legs": legs,
    }


def _times(started: float | None, complete: float | None) -> dict:
    duration = None
    if started is not None and complete is not None:
        duration = round(complete - started, 3)
    return {
        "started_at": _iso_epoch(started),
        "started_at_epoch": started,
        "complete_at": _iso_epoch(complete),
        "complete_at_epoch": complete,
        "duration_s": duration,
    }


def _iso_epoch(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    if not math.isfinite(epoch):
        raise ValueError(f"invalid timestamp {epoch!r}")
    return _iso(datetime.fromtimestamp(epoch, timezone.utc))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump_manifest(manifest: dict) -> bytes:
    # sort_keys makes the file byte-identical for identical inputs;
    # allow_nan=False keeps it strict JSON for other tools.
    return (json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False,
                       ensure_ascii=False) + "\n").encode()


def _sums_text(entries: Iterable[FileEntry]) -> str:
    return "".join(f"{e.sha256}  {e.path}\n" for e in sorted(entries, key=lambda e: e.path))


def _write_bundle(work: Path, name: str, entries: list[FileEntry],
                  stamp: datetime, root: Path) -> Path:
    """Write the reproducible bundle to a temporary file in *root*.

    Member order, owners, modes, mtimes and the gzip header are all fixed so
    identical inputs give a byte-identical bundle.  The files were just
    written, so reading them back comes from the page cache.
    """
    mtime = int(stamp.timestamp())
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=BUNDLE_SUFFIX + ".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as raw:
            # filename="" and mtime=0 keep the temp name and the clock out of
            # the gzip header.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                               compresslevel=BUNDLE_COMPRESSLEVEL) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT,
                                 copybufsize=CHUNK) as tar:
                for rel, size in _bundle_members(entries):
                    _add_member(tar, work, name, rel, size, mtime)
            _sync(raw)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; evidence is for reading
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _bundle_members(entries: list[FileEntry]) -> list[tuple[str, int | None]]:
    """Every directory ("" is the top one) and file, sorted by path components;
    size None marks a directory.  Component-wise sorting puts each directory
    right before its content."""
    members: dict[str, int | None] = {"": None}
    for e in entries:
        members[e.path] = e.size
        parts = e.path.split("/")
        for i in range(1, len(parts)):
            members.setdefault("/".join(parts[:i]), None)
    return sorted(members.items(), key=lambda item: item[0].split("/"))


def _add_member(tar: tarfile.TarFile, work: Path, name: str, rel: str,
                size: int | None, mtime: int) -> None:
    info = tarfile.TarInfo(f"{name}/{rel}" if rel else name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.mode, info.size = 0o644, size
    with open(work / rel, "rb") as fh:
        tar.addfile(info, fh)


def _link_into_place(tmp: Path, final: Path) -> None:
    # link() fails if *final* exists, so an existing bundle is never replaced.
    os.link(tmp, final)
    os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------- release notes


def release_notes(name: str, gate: GateEvidence) -> str:
    """The Markdown snippet the release notes should carry for this run."""
    gate_link = f" ([gate build]({gate.gate_url}))" if gate.gate_url else ""
    lines = [
        f"### Integration matrix: {_code(gate.tag or 'untagged')}",
        "",
        f"- Revision: {_code(gate.revision)} ({_code(gate.repository)})",
        f"- Gate: {gate_verdict(gate)}{gate_link}",
        "",
        "| Leg | Result | Worker | Duration | Build | Note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_leg_row(leg) for leg in gate.legs]
    if gate.skipped:
        lines += ["", "Skipped legs:"]
        lines += [f"- {_code(leg)}: {_inline(reason)}" for leg, reason in gate.skipped.items()]
    lines += [
        "",
        f"Evidence: `{RELEASE_EVIDENCE_DIR}/{name}/` (verify with "
        f"`matrixgate evidence verify` or `sha256sum -c SHA256SUMS`)",
    ]
    return "\n".join(lines) + "\n"


def gate_verdict(gate: GateEvidence) -> str:
    """One-line verdict.  Any blocking leg makes the gate FAILED whatever its
    result says: evidence must never present a blocked release as passed."""
    if gate.blocking or gate.result not in PASSING_RESULTS:
        legs = ", ".join(_code(leg) for leg in gate.blocking)
        blocked = f"BLOCKED by {legs}" if legs else f"gate result {_inline(gate.result)}"
        return f"**FAILED** ({blocked})"
    if gate.result == "warnings":
        return f"**passed with warnings**: {_warnings_summary(gate)}"
    return "**passed**"


def _warnings_summary(gate: GateEvidence) -> str:
    by_reason: dict[str, list[str]] = {}
    for leg, reason in gate.skipped.items():
        by_reason.setdefault(reason, []).append(leg)
    parts = [f"{', '.join(legs)} skipped: {reason}" for reason, legs in by_reason.items()]
    warned = [leg.name for leg in gate.legs if leg.result == "warnings"]
    if warned:
        parts.append(f"warnings in {', '.join(warned)}")
    return _inline("; ".join(parts) or "see legs below")


def _leg_row(leg: LegEvidence) -> str:
    duration = (_duration(leg.complete_at - leg.started_at)
                if leg.started_at is not None and leg.complete_at is not None else "–")
    build = f"[build]({leg.build_url})" if leg.build_url else "–"
    cells = [leg.name, leg.result, leg.worker or "–", duration, build, leg.note or ""]
    return "| " + " | ".join(_inline(c).replace("|", "\\|") for c in cells) + " |"


def _duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _inline(text: str) -> str:
    # Keep user-supplied text (notes, reasons) from breaking the Markdown lines.
    return " ".join(str(text).split())


def _code(text: str) -> str:
    return f"`{_inline(text).replace('`', '')}`"


# -------------------------------------------------------------- verifying


@dataclass
class Inventory:
    """What a directory or bundle actually holds."""

    name: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)  # MANIFEST / SUMS content
    problems: list[str] = field(default_factory=list)


class Finding(NamedTuple):
    path: str
    kind: str  # "missing", "altered" or "extra file"
    detail: str


@dataclass
class Verification:
    problems: list[str]
    manifest: dict | None
    files: int


def verify(path: Path) -> list[str]:
    """Problems with the evidence at *path* (directory or bundle); [] if OK.

    Raises EvidenceError if *path* cannot be read as evidence at all.
    """
    return check(path).problems


def check(path: Path) -> Verification:
    path = Path(path)
    if path.is_dir():
        inventory = _scan_dir(path)
    elif path.is_file():
        inventory = _scan_bundle(path)
    else:
        raise EvidenceError(f"{path}: no such directory or bundle")
    problems, manifest = _compare(inventory)
    return Verification(inventory.problems + problems, manifest, len(inventory.files))


def _scan_dir(directory: Path) -> Inventory:
    inventory = Inventory(name=directory.name)
    for rel, entry in _walk(directory):
        if entry.is_symlink():
            inventory.problems.append(f"{rel}: symbolic link, not allowed in evidence")
        elif entry.is_dir(follow_symlinks=False):
            continue
        elif not entry.is_file(follow_symlinks=False):
            inventory.problems.append(f"{rel}: not a regular file")
        else:
            with open(entry.path, "rb") as fh:
                _add_file(inventory, rel, fh)
    return inventory


def _walk(directory: Path, prefix: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        yield rel, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), rel + "/")


def _scan_bundle(bundle: Path) -> Inventory:
    """Read the bundle as a stream and hash members without extracting them:
    nothing from an untrusted archive ever reaches the filesystem, and every
    byte is read once."""
    inventory = Inventory(name="")
    try:
        with tarfile.open(bundle, mode="r|gz") as tar:
            for member in tar:
                _scan_member(inventory, tar, member)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise EvidenceError(f"{bundle}: cannot read bundle: {exc}") from exc
    if not inventory.name:
        inventory.problems.append(f"{bundle.name}: bundle holds no evidence directory")
    return inventory


def _scan_member(inventory: Inventory, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    name = member.name
    if not _safe_rel(name):
        inventory.problems.append(
            f"{name}: unsafe bundle member (absolute, '..' or unnormalised path), refused")
        return
    if not (member.isfile() or member.isdir()):
        inventory.problems.append(f"{name}: unsafe bundle member (link or device), refused")
        return
    top, _, rel = name.partition("/")
    if inventory.name and top != inventory.name:
        inventory.problems.append(f"{name}: bundle member outside {inventory.name}/, refused")
        return
    inventory.name = top
    if member.isdir():
        return
    if not rel:
        inventory.problems.append(f"{name}: bundle member outside an evidence directory, refused")
    elif rel in inventory.files:
        inventory.problems.append(f"{rel}: duplicate bundle member, refused")
    else:
        _add_file(inventory, rel, tar.extractfile(member))


def _add_file(inventory: Inventory, rel: str, fh: io.BufferedIOBase) -> None:
    """Hash one file; keep the content of the small metadata files."""
    keep = rel in (MANIFEST, SUMS)
    digest = hashlib.sha256()
    size = 0
    kept = bytearray()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if keep and size <= MAX_METADATA_BYTES:
            kept += chunk
    inventory.files[rel] = FileEntry(rel, size, digest.hexdigest())
    if keep and size <= MAX_METADATA_BYTES:
        inventory.metadata[rel] = bytes(kept)
    elif keep:
        inventory.problems.append(f"{rel}: malformed (larger than {MAX_METADATA_BYTES} bytes)")


def _compare(inv: Inventory) -> tuple[list[str], dict | None]:
    problems: list[str] = []
    sums = _parse_sums(inv, problems)
    manifest, listed = _parse_manifest(inv, problems)
    findings: list[Finding] = []
    if sums is not None:
        findings += _check_listed(inv, sums, SUMS)
        findings += _extras(inv.files, sums, SUMS, exclude={SUMS})
    if listed is not None:
        findings += _check_listed(inv, listed, MANIFEST)
        # Files written by write_evidence itself are not leg files.
        present = sums if sums is not None else inv.files
        findings += _extras(present, listed, MANIFEST, exclude=RESERVED_NAMES)
    return problems + _dedupe(findings), manifest


def _parse_sums(inv: Inventory, problems: list[str]) -> dict[str, FileEntry] | None:
    """path -> expected entry (size unknown: -1), or None if unusable."""
    raw = inv.metadata.get(SUMS)
    if raw is None:
        if SUMS not in inv.files:
            problems.append(f"{SUMS}: missing")
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        problems.append(f"{SUMS}: malformed (not UTF-8)")
        return None
    sums: dict[str, FileEntry] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        match = SUMS_LINE_RE.match(line)
        if not match or not _safe_rel(match.group(2)) or match.group(2) in sums:
            problems.append(f"{SUMS}: malformed line {lineno}: {line[:120]!r}")
            continue
        sums[match.group(2)] = FileEntry(match.group(2), -1, match.group(1))
    return sums


def _parse_manifest(inv: Inventory, problems: list[str],
                    ) -> tuple[dict | None, dict[str, FileEntry] | None]:
    raw = inv.metadata.get(MANIFEST)
    if raw is None:
        if MANIFEST not in inv.files:
            problems.append(f"{MANIFEST}: missing")
        return None, None
    try:
        manifest = json.loads(raw)
        listed = _manifest_files(manifest)
    except (ValueError, TypeError, KeyError) as exc:
        problems.append(f"{MANIFEST}: malformed ({exc})")
        return None, None
    if manifest.get("name") != inv.name:
        problems.append(f"{MANIFEST}: names evidence {manifest.get('name')!r} "
                        f"but it is stored as {inv.name!r}")
    return manifest, listed


def _manifest_files(manifest: object) -> dict[str, FileEntry]:
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"not a schema {SCHEMA_VERSION} manifest")
    listed: dict[str, FileEntry] = {}
    for leg in manifest["legs"]:
        for item in leg["files"]:
            path, size, digest = item["path"], item["size"], item["sha256"]
            if (not isinstance(path, str) or not _safe_rel(path)
                    or not path.startswith(f"{leg['name']}/") or path in listed
                    or not isinstance(size, int) or not isinstance(digest, str)):
                raise ValueError(f"bad file entry {item!r}")
            listed[path] = FileEntry(path, size, digest)
    return listed


def _safe_rel(path: str) -> bool:
    """Relative, normalised and never climbing: an absolute path starts with
    an empty component, so it fails too."""
    return all(p not in ("", ".", "..") for p in path.split("/"))


def _check_listed(inv: Inventory, expected: dict[str, FileEntry], source: str) -> list[Finding]:
    """Missing and altered files among those *source* lists."""
    findings = []
    for path, want in sorted(expected.items()):
        have = inv.files.get(path)
        if have is None:
            findings.append(Finding(path, "missing", f"listed in {source}"))
        elif want.size >= 0 and have.size != want.size:
            detail = f"size {have.size}, {source} says {want.size}"
            findings.append(Finding(path, "altered", detail))
        elif have.sha256 != want.sha256:
            findings.append(Finding(path, "altered", f"sha256 differs from {source}"))
    return findings


def _extras(present: Iterable[str], expected: dict[str, FileEntry], source: str,
            exclude: frozenset[str] | set[str]) -> list[Finding]:
    return [Finding(path, "extra file", f"not listed in {source}")
            for path in sorted(set(present) - set(expected) - exclude)]


def _dedupe(findings: list[Finding]) -> list[str]:
    """One line per file and kind: an altered log is reported once, citing the
    first listing that caught it, rather than once per listing."""
    lines: dict[tuple[str, str], str] = {}
    for f in findings:
        lines.setdefault((f.path, f.kind), f"{f.path}: {f.kind} ({f.detail})")
    return [lines[key] for key in sorted(lines)]


# -------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """`matrixgate evidence verify <dir|bundle>`; *argv* excludes
    `matrixgate evidence`.  0 = verified, 1 = problems, 2 = usage/unreadable."""
    parser = argparse.ArgumentParser(prog="matrixgate evidence",
                                     description="Check integration-matrix release evidence.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify_cmd = sub.add_parser("verify", help="verify an evidence directory or .tar.gz bundle")
    verify_cmd.add_argument("path", type=Path)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors; callers want a code
        return exc.code if isinstance(exc.code, int) else 2
    return _verify_command(args.path)


def _verify_command(path: Path) -> int:
    try:
        result = check(path)
    except (EvidenceError, OSError) as exc:
        print(f"matrixgate evidence: error: {exc}", file=sys.stderr)
        return 2
    if result.problems:
        for line in result.problems:
            print(line)
        print(f"{path}: {len(result.problems)} problem(s) found", file=sys.stderr)
        return 1
    manifest = result.manifest or {}
    print(f"OK {manifest.get('name')}: {result.files} files verified; "
          f"tag {manifest.get('tag')}, revision {manifest.get('revision')}, "
          f"gate {manifest.get('result')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
