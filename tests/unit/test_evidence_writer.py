"""Tests for release evidence writing and verification (src/matrixgate/evidence.py)."""

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
try:
    from matrixgate import evidence as ev
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))
    from matrixgate import evidence as ev

NOW = datetime(2026, 12, 4, 16, 30, 12, tzinfo=timezone.utc)
NAME = "integration-matrix-20261204T163012Z"
T0 = 1796401800.0  # 2026-12-04T16:30:00Z
LOG = "chainfire-flaredb/stdio/01-run-tests.log"


def leg(name, result="success", files=None, **kw):
    defaults = dict(worker=f"{name}-worker", capabilities={"kvm": True, "cpus": 8},
                    started_at=T0, complete_at=T0 + 192.5,
                    build_url=f"http://bb/#/builders/{name}/builds/7")
    defaults.update(kw)
    return ev.LegEvidence(name=name, result=result,
                          files=files if files is not None else {"stdio/01-run-tests.log": b"ok\n"},
                          **defaults)


def make_gate(tmp_path, result="success", blocking=(), skipped=None, legs=None):
    source = tmp_path / "src" / "big.log"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(b"line of log output\n" * 50_000)
    legs = legs if legs is not None else [
        leg("chainfire-flaredb", files={"stdio/01-run-tests.log": source,
                                        "artifacts/junit.xml": b"<testsuite/>\n"}),
        leg("flaredb-plasmavmc", result="failure" if blocking else "success"),
        leg("plasmavmc-e2e", result="skipped", worker=None, capabilities=None,
            started_at=None, complete_at=None, build_url=None, files={},
            note="skipped: not requested"),
    ]
    return ev.GateEvidence(tag="v1.4.0", revision="0123abcd" * 5, repository="https://git.example/platform",
                           gate_url="http://bb/#/builders/release-gate/builds/3", result=result,
                           started_at=T0 - 10, complete_at=T0 + 300, legs=legs,
                           skipped=skipped if skipped is not None else {"plasmavmc-e2e": "not requested"},
                           blocking=list(blocking))


@pytest.fixture
def record(tmp_path):
    return ev.write_evidence(tmp_path / "evidence", make_gate(tmp_path), now=NOW)


def test_layout_and_manifest(record, tmp_path):
    root = tmp_path / "evidence"
    assert record.name == NAME
    assert record.directory == root / NAME
    assert record.bundle == root / f"{NAME}.tar.gz"
    assert sorted(p.name for p in root.iterdir()) == [NAME, f"{NAME}.tar.gz"]  # no temp leftovers
    assert (record.directory / LOG).read_bytes() == (tmp_path / "src" / "big.log").read_bytes()

    text = (record.directory / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert manifest == record.manifest
    assert manifest["schema_version"] == 1
    assert manifest["generated_at"] == "2026-12-04T16:30:12Z"
    assert (manifest["tag"], manifest["result"], manifest["blocking"]) == ("v1.4.0", "success", [])
    assert manifest["skipped"] == {"plasmavmc-e2e": "not requested"}
    first = manifest["legs"][0]
    assert first["started_at"] == "2026-12-04T16:30:00Z"
    assert first["started_at_epoch"] == T0
    assert first["duration_s"] == 192.5
    assert first["capabilities"] == {"kvm": True, "cpus": 8}
    assert [f["path"] for f in first["files"]] == ["chainfire-flaredb/artifacts/junit.xml", LOG]
    for entry in first["files"]:
        data = (record.directory / entry["path"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    e2e = manifest["legs"][2]
    assert (e2e["files"], e2e["duration_s"], e2e["started_at"]) == ([], None, None)
    assert e2e["note"] == "skipped: not requested"


def test_sha256sums_covers_everything_sorted(record):
    lines = (record.directory / "SHA256SUMS").read_text().splitlines()
    paths = [line.split("  ", 1)[1] for line in lines]
    assert paths == sorted(paths)
    on_disk = sorted(str(p.relative_to(record.directory))
                     for p in record.directory.rglob("*") if p.is_file())
    assert paths == [p for p in on_disk if p != "SHA256SUMS"]
    assert "manifest.json" in paths and "release-notes.md" in paths


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum missing")
def test_sha256sum_tool_accepts_sums(record):
    run = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=record.directory,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_verify_directory_and_bundle_ok(record):
    assert ev.verify(record.directory) == []
    assert ev.verify(record.bundle) == []


def test_bundle_layout_and_reproducible(tmp_path, record):
    again = ev.write_evidence(tmp_path / "other", make_gate(tmp_path), now=NOW)
    assert again.bundle.read_bytes() == record.bundle.read_bytes()
    with tarfile.open(record.bundle) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == NAME
    assert all(n == NAME or n.startswith(NAME + "/") for n in names)
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "root", int(NOW.timestamp()))}


def test_release_notes_green(record):
    notes = (record.directory / "release-notes.md").read_text()
    assert "`v1.4.0`" in notes and "0123abcd" in notes
    assert "Gate: **passed**" in notes
    assert "| chainfire-flaredb | success | chainfire-flaredb-worker | 3m 12s | [build](http://bb/" in notes
    assert "- `plasmavmc-e2e`: not requested" in notes
    assert (f"Evidence: `docs/evidence/{NAME}/` (verify with `matrixgate evidence verify` "
            "or `sha256sum -c SHA256SUMS`)") in notes


def test_red_gate_evidence_is_kept_and_says_failed(tmp_path):
    gate = make_gate(tmp_path, result="failure", blocking=["flaredb-plasmavmc"])
    rec = ev.write_evidence(tmp_path / "evidence", gate, now=NOW)
    notes = (rec.directory / "release-notes.md").read_text()
    assert "**FAILED** (BLOCKED by `flaredb-plasmavmc`)" in notes
    assert "| flaredb-plasmavmc | failure |" in notes
    assert rec.manifest["blocking"] == ["flaredb-plasmavmc"]
    assert ev.verify(rec.directory) == []


def test_blocking_leg_overrides_a_success_result(tmp_path):
    gate = make_gate(tmp_path, result="success", blocking=["flaredb-plasmavmc"])
    assert ev.gate_verdict(gate).startswith("**FAILED**")


def test_warnings_gate_names_skipped_legs_and_reason(tmp_path):
    skipped = {"flaredb-plasmavmc": "skip_plasma set", "plasmavmc-e2e": "skip_plasma set"}
    gate = make_gate(tmp_path, result="warnings", skipped=skipped)
    assert ev.gate_verdict(gate) == (
        "**passed with warnings**: flaredb-plasmavmc, plasmavmc-e2e skipped: skip_plasma set")


def test_name_collision_appends_suffix_and_never_overwrites(tmp_path, record):
    root = tmp_path / "evidence"
    before = record.bundle.read_bytes()
    second = ev.write_evidence(root, make_gate(tmp_path, result="failure", blocking=["x"]), now=NOW)
    (root / f"{NAME}-3.tar.gz").write_bytes(b"someone else's")  # a lone bundle also holds the name
    fourth = ev.write_evidence(root, make_gate(tmp_path), now=NOW)
    assert (second.name, fourth.name) == (f"{NAME}-2", f"{NAME}-4")
    assert record.bundle.read_bytes() == before
    assert json.loads((record.directory / "manifest.json").read_text())["result"] == "success"
    assert f"docs/evidence/{NAME}-2/" in (second.directory / "release-notes.md").read_text()


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_altered_file_is_named(record):
    flip_byte(record.directory / LOG)
    assert ev.verify(record.directory) == [f"{LOG}: altered (sha256 differs from SHA256SUMS)"]


def test_missing_file_is_named(record):
    (record.directory / "chainfire-flaredb/artifacts/junit.xml").unlink()
    assert ev.verify(record.directory) == [
        "chainfire-flaredb/artifacts/junit.xml: missing (listed in SHA256SUMS)"]


def test_extra_file_is_named(record):
    (record.directory / "flaredb-plasmavmc" / "planted.log").write_text("not from the gate\n")
    assert ev.verify(record.directory) == [
        "flaredb-plasmavmc/planted.log: extra file (not listed in SHA256SUMS)"]


def test_symlink_in_directory_is_reported(record, tmp_path):
    (tmp_path / "outside").write_text("x")
    (record.directory / "link.log").symlink_to(tmp_path / "outside")
    assert ev.verify(record.directory) == ["link.log: symbolic link, not allowed in evidence"]


def rewrite_sums(directory: Path) -> None:
    """What a careful tamperer does after editing: regenerate SHA256SUMS."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(directory)}"
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"]
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_edited_manifest_is_reported(record):
    path = record.directory / "manifest.json"
    path.write_text(path.read_text().replace('"success"', '"warnings"', 1))
    assert ev.verify(record.directory) == ["manifest.json: altered (sha256 differs from SHA256SUMS)"]


def test_log_swapped_with_sums_regenerated_is_caught_by_manifest(record):
    flip_byte(record.directory / LOG)
    rewrite_sums(record.directory)
    assert ev.verify(record.directory) == [f"{LOG}: altered (sha256 differs from manifest.json)"]


def test_file_planted_with_sums_regenerated_is_caught_by_manifest(record):
    (record.directory / "chainfire-flaredb" / "planted.log").write_text("x\n")
    rewrite_sums(record.directory)
    assert ev.verify(record.directory) == [
        "chainfire-flaredb/planted.log: extra file (not listed in manifest.json)"]


@pytest.mark.parametrize("content, expected", [
    ("{not json", "manifest.json: malformed"),
    ('{"schema_version": 1, "legs": [{"name": "a", "files": [{"path": "../x"}]}]}',
     "manifest.json: malformed"),
    ('{"schema_version": 99, "legs": []}', "manifest.json: malformed"),
])
def test_malformed_manifest_is_reported(record, content, expected):
    (record.directory / "manifest.json").write_text(content)
    rewrite_sums(record.directory)
    problems = ev.verify(record.directory)
    assert len(problems) == 1 and problems[0].startswith(expected)


def test_malformed_sums_line_is_reported(record):
    sums = record.directory / "SHA256SUMS"
    sums.write_text(sums.read_text() + "not a checksum line\n")
    assert ev.verify(record.directory) == ["SHA256SUMS: malformed line 6: 'not a checksum line'"]


def test_missing_sums_and_manifest(record):
    (record.directory / "SHA256SUMS").unlink()
    (record.directory / "manifest.json").unlink()
    assert ev.verify(record.directory) == ["SHA256SUMS: missing", "manifest.json: missing"]


def test_renamed_directory_no_longer_matches_release_notes(record):
    moved = record.directory.rename(record.directory.with_name("integration-matrix-elsewhere"))
    assert ev.verify(moved) == [
        f"manifest.json: names evidence '{NAME}' but it is stored as 'integration-matrix-elsewhere'"]


def build_bundle(path: Path, source_dir: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source_dir, arcname=source_dir.name)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def test_bundle_with_unsafe_members_is_refused(record, tmp_path):
    evil = tarfile.TarInfo("../evil.sh")
    evil.size = 4
    link = tarfile.TarInfo(f"{NAME}/chainfire-flaredb/passwd.log")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    dev = tarfile.TarInfo(f"{NAME}/null")
    dev.type = tarfile.CHRTYPE
    absolute = tarfile.TarInfo("/tmp/abs.log")
    absolute.size = 1
    bundle = tmp_path / "evil.tar.gz"
    build_bundle(bundle, record.directory,
                 [(evil, b"boom"), (link, None), (dev, None), (absolute, b"x")])
    assert ev.verify(bundle) == [
        "../evil.sh: unsafe bundle member (absolute, '..' or unnormalised path), refused",
        f"{NAME}/chainfire-flaredb/passwd.log: unsafe bundle member (link or device), refused",
        f"{NAME}/null: unsafe bundle member (link or device), refused",
        "/tmp/abs.log: unsafe bundle member (absolute, '..' or unnormalised path), refused",
    ]
    assert not (tmp_path / "evil.sh").exists()


def test_bundle_with_altered_member_is_reported(record, tmp_path):
    flip_byte(record.directory / LOG)
    bundle = tmp_path / "altered.tar.gz"
    build_bundle(bundle, record.directory, [])
    assert ev.verify(bundle) == [f"{LOG}: altered (sha256 differs from SHA256SUMS)"]


def test_unreadable_bundle_raises(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"not a tar archive" * 100)[:50])
    with pytest.raises(ev.EvidenceError):
        ev.verify(junk)
    with pytest.raises(ev.EvidenceError):
        ev.verify(tmp_path / "does-not-exist")


@pytest.mark.parametrize("bad", [
    "/etc/passwd", "../escape.log", "stdio/../../escape.log", "stdio/../x.log", "", "a//b.log",
    "./x.log", "stdio/", "a\\b.log", "new\nline.log",
])
def test_invalid_leg_file_names_are_rejected(tmp_path, bad):
    gate = make_gate(tmp_path, legs=[leg("chainfire-flaredb", files={bad: b"x"})])
    with pytest.raises(ValueError):
        ev.write_evidence(tmp_path / "evidence", gate, now=NOW)
    assert not (tmp_path / "evidence").exists()


@pytest.mark.parametrize("legs", [
    [leg("../up")], [leg("a/b")], [leg("manifest.json")], [leg("SHA256SUMS")],
    [leg("same"), leg("same")],
    [leg("clash", files={"stdio": b"x", "stdio/01.log": b"y"})],
])
def test_invalid_legs_are_rejected(tmp_path, legs):
    with pytest.raises(ValueError):
        ev.write_evidence(tmp_path / "evidence", make_gate(tmp_path, legs=legs), now=NOW)


def test_failed_write_leaves_nothing_behind(tmp_path):
    gate = make_gate(tmp_path, legs=[leg("a"), leg("b", files={"x.log": tmp_path / "gone.log"})])
    root = tmp_path / "evidence"
    with pytest.raises(FileNotFoundError):
        ev.write_evidence(root, gate, now=NOW)
    assert list(root.iterdir()) == []


def test_cli_ok(record, capsys):
    assert ev.main(["verify", str(record.directory)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {NAME}: ") and "tag v1.4.0" in out
    assert ev.main(["verify", str(record.bundle)]) == 0


def test_cli_problems_exit_1_one_per_line(record, capsys):
    flip_byte(record.directory / LOG)
    (record.directory / "chainfire-flaredb/artifacts/junit.xml").unlink()
    assert ev.main(["verify", str(record.directory)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "chainfire-flaredb/artifacts/junit.xml: missing (listed in SHA256SUMS)",
        f"{LOG}: altered (sha256 differs from SHA256SUMS)",
    ]
    assert "2 problem(s)" in captured.err


@pytest.mark.parametrize("argv", [[], ["verify"], ["bogus", "x"], ["verify", "/no/such/evidence"]])
def test_cli_usage_and_unreadable_exit_2(argv, capsys):
    assert ev.main(argv) == 2
    assert capsys.readouterr().err


def test_cli_runs_as_module(record):
    run = subprocess.run([sys.executable, "-m", "matrixgate.evidence", "verify", str(record.bundle)],
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"OK {NAME}")
