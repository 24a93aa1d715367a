"""The matrix and worker schema (src/matrixgate/loader.py).

One test per class of error, each asserting the exact ``file:line: key path: message`` a
maintainer would read, plus the shipped files loading cleanly.  Files are written into a
temporary directory that is also the working directory, so they display as ``matrix.yaml``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from matrixgate import loader
from matrixgate.loader import DataError, load_matrix, load_workers
from matrixgate.model import Command, SecretRef
from matrixgate.yamlsource import Problems

REPO = Path(__file__).resolve().parents[2]
LEG_KEYS_TEXT = ("name, components, covers, requires, commands, env, timeout, artifacts, enabled, "
                 "on_request, run_for_tags, wait_for_worker, max_attempts, allow_tcg")
UNSAFE = ("is not a safe name: use lowercase letters, digits and '-', starting with a letter or "
          "digit, at most 50 characters")

#: Two valid legs (lines 1-10); tests append a third leg from line 11 on.
HEAD = """\
version: 1
legs:
  - name: first
    components: [a, b]
    covers: the first pair
    commands: [make first]
  - name: second
    components: [b, c]
    covers: the second pair
    commands: [make second]
"""


@pytest.fixture
def write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(text: str, name: str = "matrix.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


def matrix_errors(path: Path) -> list[str]:
    with pytest.raises(DataError) as info:
        load_matrix(path)
    assert str(info.value) == "\n".join(info.value.messages)
    return info.value.messages


def worker_errors(path: Path) -> list[str]:
    with pytest.raises(DataError) as info:
        load_workers(path)
    return info.value.messages


def third_leg(body: str) -> str:
    """HEAD plus a third leg whose ``- name:`` line is line 11."""
    return HEAD + textwrap.indent(textwrap.dedent(body), "  ")


# --- the matrix: one test per class of error ------------------------------------------------

def test_valid_head_loads(write):
    matrix = load_matrix(write(HEAD))
    assert [leg.name for leg in matrix.legs] == ["first", "second"]
    assert matrix.legs[0].commands == (Command(name="make first", run="make first"),)
    assert matrix.legs[0].timeout == 1800 and matrix.legs[0].wait_for_worker == 1800.0
    assert matrix.source == "matrix.yaml"


def test_unknown_key(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make third]
          comands: [typo]
        """))
    assert matrix_errors(path) == [
        f"matrix.yaml:15: legs[2].comands: unknown key 'comands' (allowed: {LEG_KEYS_TEXT})"]


def test_missing_required_key(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          commands: [make third]
        """))
    # A missing key has no line of its own: the message points at the leg that lacks it.
    assert matrix_errors(path) == ["matrix.yaml:11: legs[2]: missing required key 'covers'"]


def test_missing_required_top_level_key(write):
    path = write("legs:\n  - name: a\n    components: [a, b]\n    covers: x\n    commands: [x]\n")
    assert matrix_errors(path) == ["matrix.yaml:1: (top level): missing required key 'version'"]


def test_missing_commands(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
        """))
    assert matrix_errors(path) == ["matrix.yaml:11: legs[2]: missing required key 'commands'"]


def test_missing_components(write):
    path = write(third_leg("""\
        - name: third
          covers: x
          commands: [make]
        """))
    assert matrix_errors(path) == ["matrix.yaml:11: legs[2]: missing required key 'components'"]


def test_empty_commands(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: []
        """))
    assert matrix_errors(path) == ["matrix.yaml:14: legs[2].commands: must list at least one command"]


def test_command_mapping_without_run(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands:
            - name: no run here
        """))
    assert matrix_errors(path) == ["matrix.yaml:15: legs[2].commands[0]: missing required key 'run'"]


def test_duplicate_leg_names(write):
    path = write(third_leg("""\
        - name: first
          components: [c, d]
          covers: x
          commands: [make]
        """))
    assert matrix_errors(path) == [
        "matrix.yaml:11: legs[2].name: duplicate leg name 'first' (first at legs[0])"]


@pytest.mark.parametrize("name", [
    "Upper",                 # uppercase
    "under_score",           # underscore
    "a" * 51,                # longer than 50
    "-leading-dash",         # would read as an option
    "dot.ted",
])
def test_unsafe_leg_names(write, name):
    path = write(third_leg(f"""\
        - name: "{name}"
          components: [c, d]
          covers: x
          commands: [make]
        """))
    assert matrix_errors(path) == [f"matrix.yaml:11: legs[2].name: {name!r} {UNSAFE}"]


def test_name_with_trailing_newline_is_unsafe(write):
    path = write(third_leg("""\
        - name: "third\\n"
          components: [c, d]
          covers: x
          commands: [make]
        """))
    assert matrix_errors(path) == [f"matrix.yaml:11: legs[2].name: 'third\\n' {UNSAFE}"]


def test_longest_safe_name_is_accepted(write):
    name = "a" + "-b" * 24 + "c"           # 50 characters
    assert len(name) == 50
    matrix = load_matrix(write(third_leg(f"""\
        - name: {name}
          components: [c, d]
          covers: x
          commands: [make]
        """)))
    assert matrix.legs[2].name == name


@pytest.mark.parametrize("name", ["release-gate", "release-publish", "gate"])
def test_reserved_name(write, name):
    path = write(third_leg(f"""\
        - name: {name}
          components: [c, d]
          covers: x
          commands: [make]
        """))
    assert matrix_errors(path) == [
        f"matrix.yaml:11: legs[2].name: {name!r} is reserved for Matrix Gate's own builders"]


def test_unknown_capability(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          requires:
            - kvm
            - gpu
          commands: [make]
        """))
    assert matrix_errors(path) == [
        "matrix.yaml:16: legs[2].requires[1]: unknown capability 'gpu' (known: kvm, nested_virt, qemu)"]


@pytest.mark.parametrize("line, message", [
    ("timeout: '600'", "legs[2].timeout: must be an integer, got a string"),
    ("timeout: 0", "legs[2].timeout: must be at least 1, got 0"),
    ("timeout: true", "legs[2].timeout: must be an integer, got a boolean"),
    ("max_attempts: 1.5", "legs[2].max_attempts: must be an integer, got a number"),
    ("enabled: 'yes'", "legs[2].enabled: must be true or false, got a string"),
    ("on_request: 1", "legs[2].on_request: must be true or false, got an integer"),
    ("allow_tcg: null", "legs[2].allow_tcg: must be true or false, got nothing (null)"),
    ("env: [A=1]", "legs[2].env: must be a mapping of NAME: value, got a list"),
    ("artifacts: {a: b}", "legs[2].artifacts: must be a list, got a mapping"),
    ("requires: kvm", "legs[2].requires: must be a list, got a string"),
    ("run_for_tags: v1", "legs[2].run_for_tags: must be a list, got a string"),
])
def test_wrong_types(write, line, message):
    # The offending key is the leg's 5th line: line 15 of the file.
    path = write(third_leg(f"""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          {line}
        """))
    assert matrix_errors(path) == [f"matrix.yaml:15: {message}"]


def test_int_where_a_string_belongs(write):
    path = write(third_leg("""\
        - name: 7
          components: [c, 8]
          covers: 42
          commands: [make]
        """))
    assert matrix_errors(path) == [
        "matrix.yaml:11: legs[2].name: must be a string, got an integer",
        "matrix.yaml:12: legs[2].components[1]: must be a string, got an integer",
        "matrix.yaml:13: legs[2].covers: must be a string, got an integer",
    ]


def test_wrong_type_in_a_command(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands:
            - run: make
              timeout: "10"
        """))
    assert matrix_errors(path) == ["matrix.yaml:16: legs[2].commands[0].timeout: must be an integer, got a string"]


def test_components_must_be_two(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d, e]
          covers: x
          commands: [make]
        """))
    assert matrix_errors(path) == [
        "matrix.yaml:12: legs[2].components: must name exactly two components (from, to), got 3"]


def test_bad_env_names_and_values(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          env:
            GOOD_NAME: plain
            1BAD: x
            BAD-DASH: x
            TOKEN: {secret: "not a name!"}
            NO_SECRET: {vault: x}
            LISTED: [1, 2]
            FLAG: true
        """))
    assert matrix_errors(path) == [
        "matrix.yaml:17: legs[2].env.1BAD: '1BAD' is not a valid environment variable name",
        "matrix.yaml:18: legs[2].env.BAD-DASH: 'BAD-DASH' is not a valid environment variable name",
        "matrix.yaml:19: legs[2].env.TOKEN.secret: 'not a name!' is not a valid secret name",
        "matrix.yaml:20: legs[2].env.NO_SECRET.vault: unknown key 'vault' (allowed: secret)",
        "matrix.yaml:20: legs[2].env.NO_SECRET: missing required key 'secret'",
        "matrix.yaml:21: legs[2].env.LISTED: must be a string or {secret: NAME}, got a list",
        "matrix.yaml:22: legs[2].env.FLAG: must be a string or {secret: NAME}, got a boolean",
    ]


def test_good_env_values(write):
    matrix = load_matrix(write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          env:
            RUST_BACKTRACE: 1
            API_TOKEN: {secret: api-token.v2}
            _UNDERSCORE: ""
        """)))
    assert matrix.legs[2].env == {"RUST_BACKTRACE": "1", "API_TOKEN": SecretRef("api-token.v2"),
                                  "_UNDERSCORE": ""}


def test_artifacts_must_stay_inside_the_checkout(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          artifacts:
            - target/junit.xml
            - /etc/passwd
            - target/../../outside
            - ..
        """))
    tail = "must be a path inside the checkout (relative, no '..')"
    assert matrix_errors(path) == [
        f"matrix.yaml:17: legs[2].artifacts[1]: '/etc/passwd' {tail}",
        f"matrix.yaml:18: legs[2].artifacts[2]: 'target/../../outside' {tail}",
        f"matrix.yaml:19: legs[2].artifacts[3]: '..' {tail}",
    ]


@pytest.mark.parametrize("value, message", [
    ('"30x"', "must be a duration (seconds, or like 90s, 30m, 2h), got '30x'"),
    ('"-5s"', "must be a duration (seconds, or like 90s, 30m, 2h), got '-5s'"),
    ("true", "must be a duration (seconds, or like 90s, 30m, 2h), got True"),
    ("0", "must be greater than zero"),
    ("-30", "must be greater than zero"),
    ('"0m"', "must be greater than zero"),
])
def test_bad_durations(write, value, message):
    path = write(third_leg(f"""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          wait_for_worker: {value}
        """))
    assert matrix_errors(path) == [f"matrix.yaml:15: legs[2].wait_for_worker: {message}"]


@pytest.mark.parametrize("value, seconds", [
    ('"90s"', 90.0), ('"30m"', 1800.0), ('"2h"', 7200.0), ("45", 45.0), ('"1.5h"', 5400.0), ("2.5", 2.5),
])
def test_good_durations(write, value, seconds):
    matrix = load_matrix(write(third_leg(f"""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          wait_for_worker: {value}
        """)))
    assert matrix.legs[2].wait_for_worker == seconds
    assert matrix.legs[0].wait_for_worker == 1800.0     # the default is untouched


def test_nan_duration_is_refused(write):
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          wait_for_worker: .nan
        """))
    assert len(matrix_errors(path)) == 1


def test_defaults_apply_to_every_leg(write):
    text = HEAD.replace("legs:\n", "defaults:\n  timeout: 300\n  wait_for_worker: 90s\n  max_attempts: 3\nlegs:\n", 1)
    matrix = load_matrix(write(text))
    assert {(leg.timeout, leg.wait_for_worker, leg.max_attempts) for leg in matrix.legs} == {(300, 90.0, 3)}


def test_bad_defaults(write):
    text = HEAD.replace("legs:\n", "defaults:\n  timeout: 0\n  wait_for_worker: soon\n  retries: 2\nlegs:\n", 1)
    assert matrix_errors(write(text)) == [
        "matrix.yaml:5: defaults.retries: unknown key 'retries' (allowed: timeout, wait_for_worker, max_attempts)",
        "matrix.yaml:3: defaults.timeout: must be at least 1, got 0",
        "matrix.yaml:4: defaults.wait_for_worker: must be a duration (seconds, or like 90s, 30m, 2h), got 'soon'",
    ]


def test_yaml_syntax_error_names_the_line(write):
    path = write(HEAD + "  - name: broken\n    components: [c, d\n    covers: x\n")
    [message] = matrix_errors(path)
    assert message.startswith("matrix.yaml:13: YAML syntax error: ")
    assert "expected ',' or ']'" in message


def test_yaml_syntax_error_mapping_values(write):
    path = write("version: 1\nlegs:\n  - name: a: b\n")
    assert matrix_errors(path) == ["matrix.yaml:3: YAML syntax error: mapping values are not allowed here"]


def test_duplicate_yaml_keys(write):
    # yaml.safe_load would silently keep the second `commands:`; the loader refuses the file.
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make one]
          commands: [make two]
        """))
    assert matrix_errors(path) == ["matrix.yaml:15: legs[2].commands: duplicate key"]


def test_unsupported_version(write):
    path = write(HEAD.replace("version: 1", "version: 2"))
    assert matrix_errors(path) == [
        "matrix.yaml:1: version: unsupported version 2 (this Matrix Gate reads version 1)"]


def test_boolean_version_is_refused(write):
    assert len(matrix_errors(write(HEAD.replace("version: 1", "version: true")))) == 1


def test_empty_legs_list(write):
    assert matrix_errors(write("version: 1\nlegs: []\n")) == ["matrix.yaml:2: legs: must declare at least one leg"]


def test_empty_file(write):
    assert matrix_errors(write("")) == ["matrix.yaml: (top level): must be a mapping, got nothing (null)"]


def test_unreadable_file(write, tmp_path):
    assert matrix_errors(tmp_path / "missing.yaml") == [
        "missing.yaml: cannot read: No such file or directory"]


def test_release_section(write):
    text = HEAD + 'release:\n  tags: "release-*"\n  publish: [./publish.sh]\n  allow_skip_plasma: true\n'
    release = load_matrix(write(text)).release
    assert release.tags == "release-*" and release.allow_skip_plasma is True
    assert release.publish == (Command(name="./publish.sh", run="./publish.sh"),)
    assert release.matches("release-1") and not release.matches("v1")
    bad = HEAD + "release:\n  tags: 5\n  allow_skip_plasma: 'no'\n"
    assert matrix_errors(write(bad)) == [
        "matrix.yaml:12: release.tags: must be a string, got an integer",
        "matrix.yaml:13: release.allow_skip_plasma: must be true or false, got a string",
    ]


def test_several_problems_reported_at_once(write):
    path = write("""\
        version: 1
        platform: [not, a, string]
        legs:
          - name: Bad_Name
            components: [a, b]
            covers: x
            commands: [make]
            timeout: "1h"
          - name: ok-leg
            components: [a, b]
            covers: x
            requires: [kvm, gpu]
            commands: []
            artifacts: [/abs]
          - name: ok-leg
            components: [a, b]
            covers: x
            commands: [make]
            wait_for_worker: 30x
        """)
    assert matrix_errors(path) == [
        "matrix.yaml:2: platform: must be a string, got a list",
        f"matrix.yaml:4: legs[0].name: 'Bad_Name' {UNSAFE}",
        "matrix.yaml:8: legs[0].timeout: must be an integer, got a string",
        "matrix.yaml:12: legs[1].requires[1]: unknown capability 'gpu' (known: kvm, nested_virt, qemu)",
        "matrix.yaml:13: legs[1].commands: must list at least one command",
        "matrix.yaml:14: legs[1].artifacts[0]: '/abs' must be a path inside the checkout (relative, no '..')",
        "matrix.yaml:19: legs[2].wait_for_worker: must be a duration (seconds, or like 90s, 30m, 2h), got '30x'",
        "matrix.yaml:15: legs[2].name: duplicate leg name 'ok-leg' (first at legs[1])",
    ]


def test_a_file_with_any_problem_yields_nothing(write):
    """Nothing half-loads: one bad leg among good ones and the whole file is refused."""
    path = write(third_leg("""\
        - name: third
          components: [c, d]
          covers: x
          commands: [make]
          timeout: -1
        """))
    with pytest.raises(DataError):
        load_matrix(path)
    # The parser itself returns no matrix either once a problem is recorded.
    import yaml
    problems = Problems("matrix.yaml")
    assert loader.parse_matrix(yaml.safe_load(path.read_text()), problems) is None
    assert problems.messages == ["matrix.yaml: legs[2].timeout: must be at least 1, got -1"]


# --- workers -----------------------------------------------------------------------------------

WORKERS_HEAD = """\
version: 1
workers:
  - name: kvm-1
    properties: {kvm: true, qemu: true}
"""


def test_workers_valid(write):
    workers = load_workers(write(WORKERS_HEAD, "workers.yaml"))
    [spec] = workers.workers
    assert spec.name == "kvm-1" and spec.capabilities == frozenset({"kvm", "qemu"})
    assert spec.password_secret == "worker-kvm-1" and spec.max_builds == 1 and spec.local is False


def test_worker_unknown_property_key(write):
    path = write(WORKERS_HEAD + "  - name: kvm-2\n    properties:\n      kvmm: true\n", "workers.yaml")
    assert worker_errors(path) == [
        "workers.yaml:7: workers[1].properties.kvmm: unknown key 'kvmm' "
        "(allowed: kvm, nested_virt, qemu, arch, os, location, notes)"]


def test_worker_unknown_key(write):
    path = write(WORKERS_HEAD + "  - name: kvm-2\n    max_build: 2\n", "workers.yaml")
    assert worker_errors(path) == [
        "workers.yaml:6: workers[1].max_build: unknown key 'max_build' "
        "(allowed: name, properties, max_builds, local, password_secret)"]


def test_worker_non_boolean_capability(write):
    path = write(WORKERS_HEAD + "  - name: kvm-2\n    properties:\n      kvm: \"yes\"\n      qemu: 1\n",
                 "workers.yaml")
    assert worker_errors(path) == [
        "workers.yaml:7: workers[1].properties.kvm: must be true or false, got a string",
        "workers.yaml:8: workers[1].properties.qemu: must be true or false, got an integer",
    ]


def test_worker_max_builds_zero(write):
    path = write(WORKERS_HEAD + "  - name: kvm-2\n    max_builds: 0\n", "workers.yaml")
    assert worker_errors(path) == ["workers.yaml:6: workers[1].max_builds: must be at least 1, got 0"]


def test_worker_max_builds_null_means_unlimited(write):
    workers = load_workers(write(WORKERS_HEAD + "  - name: kvm-2\n    max_builds: null\n", "workers.yaml"))
    assert workers.workers[1].max_builds is None


def test_worker_bad_password_secret(write):
    path = write(WORKERS_HEAD + "  - name: kvm-2\n    password_secret: ../etc/shadow\n", "workers.yaml")
    assert worker_errors(path) == [
        "workers.yaml:6: workers[1].password_secret: '../etc/shadow' is not a valid secret name"]


def test_worker_reserved_name_gate(write):
    path = write(WORKERS_HEAD + "  - name: gate\n", "workers.yaml")
    assert worker_errors(path) == [
        "workers.yaml:5: workers[1].name: 'gate' is reserved for the master's own orchestration worker"]


def test_duplicate_worker_names(write):
    path = write(WORKERS_HEAD + "  - name: kvm-1\n    local: true\n", "workers.yaml")
    assert worker_errors(path) == [
        "workers.yaml:5: workers[1].name: duplicate worker name 'kvm-1' (first at workers[0])"]


def test_worker_unsafe_name_and_missing_name(write):
    path = write(WORKERS_HEAD + "  - name: Kvm_2\n  - properties: {kvm: false}\n", "workers.yaml")
    assert worker_errors(path) == [
        f"workers.yaml:5: workers[1].name: 'Kvm_2' {UNSAFE}",
        "workers.yaml:6: workers[2]: missing required key 'name'",
    ]


def test_workers_empty_and_version(write):
    assert worker_errors(write("version: 3\nworkers: []\n", "workers.yaml")) == [
        "workers.yaml:1: version: unsupported version 3 (this Matrix Gate reads version 1)",
        "workers.yaml:2: workers: must declare at least one worker",
    ]


# --- warnings and the shipped files ----------------------------------------------------------

def test_legs_without_workers(write):
    matrix = load_matrix(write(third_leg("""\
        - name: vm-leg
          components: [c, d]
          covers: x
          requires: [kvm, qemu]
          commands: [make]
        """)))
    only_kvm = load_workers(write("version: 1\nworkers:\n  - name: w\n    properties: {kvm: true}\n",
                                  "workers.yaml"))
    assert loader.legs_without_workers(matrix, only_kvm) == [
        "leg 'vm-leg' requires kvm, qemu but no worker in workers.yaml declares all of them: its "
        "builds can never start on a real worker (dry runs still run)"]
    both = load_workers(write(WORKERS_HEAD, "workers.yaml"))
    assert loader.legs_without_workers(matrix, both) == []


def test_legs_without_workers_ignores_disabled_legs(write):
    matrix = load_matrix(write(third_leg("""\
        - name: vm-leg
          components: [c, d]
          covers: x
          requires: [nested_virt]
          enabled: false
          commands: [make]
        """)))
    workers = load_workers(write(WORKERS_HEAD, "workers.yaml"))
    assert loader.legs_without_workers(matrix, workers) == []


PLASMA_LEGS = ["flaredb-plasmavmc", "plasmavmc-creditservice", "plasmavmc-e2e"]


@pytest.mark.parametrize("name", ["matrix.yaml", "example-platform.yaml"])
def test_shipped_matrices_load(name):
    matrix = load_matrix(REPO / "matrix" / name)
    names = [leg.name for leg in matrix.legs]
    assert names == ["chainfire-flaredb", "flaredb-plasmavmc", "plasmavmc-creditservice",
                     "creditservice-nightlight", "plasmavmc-e2e", "tenant-e2e"]
    assert [leg.name for leg in matrix.enabled_legs] == names[:-1]
    assert matrix.leg("tenant-e2e").enabled is False
    assert [leg.name for leg in matrix.legs if leg.is_plasma] == PLASMA_LEGS
    for leg in PLASMA_LEGS:
        assert matrix.leg(leg).requires == frozenset({"kvm", "qemu"})
    assert [leg.name for leg in matrix.legs if leg.on_request] == ["plasmavmc-e2e"]
    assert matrix.leg("chainfire-flaredb").wait_for_worker == 1800.0     # "30m" in defaults
    assert matrix.release.tags == "v*" and matrix.release.allow_skip_plasma is False
    assert len(matrix.release.publish) == 1


def test_shipped_matrix_details():
    matrix = load_matrix(REPO / "matrix" / "matrix.yaml")
    assert matrix.platform == "photoncloud"
    e2e = matrix.leg("plasmavmc-e2e")
    assert e2e.timeout == 3600 and e2e.requested_for_tag("v1.4.0") and not e2e.requested_for_tag("v1.4.1")
    assert [c.name for c in matrix.leg("chainfire-flaredb").commands] == [
        "build tests", "raft+gossip write/read with failover", "summarise junit"]


@pytest.mark.parametrize("name, expected", [
    ("workers.yaml", {"local-kvm": ({"kvm", "nested_virt", "qemu"}, True),
                      "local-basic": (set(), True)}),
    ("production.example.yaml", {"kvm-1": ({"kvm", "nested_virt", "qemu"}, False),
                                 "kvm-2": ({"kvm", "nested_virt", "qemu"}, False),
                                 "build-1": (set(), False)}),
])
def test_shipped_workers_load(name, expected):
    workers = load_workers(REPO / "workers" / name)
    assert {w.name: (set(w.capabilities), w.local) for w in workers.workers} == expected
    matrix = load_matrix(REPO / "matrix" / "matrix.yaml")
    assert loader.legs_without_workers(matrix, workers) == []
    assert [w.name for w in workers.capable_of(matrix.leg("flaredb-plasmavmc"))] == [
        n for n, (caps, _) in expected.items() if {"kvm", "qemu"} <= caps]
