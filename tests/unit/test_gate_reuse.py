"""The gate's reuse lookup (``GateFanOut.find_reusable``) against Buildbot's real
``build_properties`` table: one query for every candidate's properties, same verdicts as
reading each build's properties one by one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
from buildbot.db.model import Model
from buildbot.process.buildstep import create_step_from_step_or_factory
from twisted.internet import defer

from matrixgate import gate, loader, props
from matrixgate.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MATRIX = loader.load_matrix(REPO / "matrix" / "matrix.yaml")
SETTINGS = Settings(basedir=Path("/tmp/matrixgate-master"), repo_url="/srv/git/platform.git")
LEG = "chainfire-flaredb"
FINGERPRINT = MATRIX.leg(LEG).fingerprint
REV = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


class FakeMaster:
    """Just what find_reusable touches: a builder, the builds list, the DB pool and model."""

    def __init__(self, builds: list[dict], properties: dict[int, dict]):
        self.engine = sa.create_engine("sqlite://")
        with self.engine.begin() as conn:
            Model.build_properties.create(conn)
            for buildid, values in properties.items():
                for name, value in values.items():
                    conn.execute(Model.build_properties.insert().values(
                        buildid=buildid, name=name, value=json.dumps(value), source="test"))
        self.queries = 0
        builder = SimpleNamespace(getBuilderId=lambda: defer.succeed(7))
        self.botmaster = SimpleNamespace(builders={LEG: builder})
        self.data = SimpleNamespace(get=lambda path, **kw: defer.succeed(list(builds)))
        self.db = SimpleNamespace(model=Model, pool=SimpleNamespace(do=self.do))

    def do(self, thd):
        self.queries += 1
        with self.engine.connect() as conn:
            return defer.succeed(thd(conn))


def lookup(builds, properties, revision=REV):
    master = FakeMaster(builds, properties)
    fan_out = create_step_from_step_or_factory(gate.GateFanOut(MATRIX, SETTINGS))
    fan_out.master = master
    result = []
    fan_out.find_reusable(LEG, revision).addCallback(result.append)
    assert result, "find_reusable did not finish synchronously with synchronous fakes"
    return result[0], master.queries


def real(rev=REV, fingerprint=FINGERPRINT, **extra):
    return {"got_revision": rev, "leg_fingerprint": fingerprint, "buildername": LEG, **extra}


def test_newest_real_passing_build_at_the_revision_is_reused():
    builds = [{"buildid": i, "number": i} for i in (6, 5, 4, 3, 2, 1)]   # newest first
    properties = {
        6: real(**{props.DRY_RUN: True}),        # a dry run: never reused
        5: real(rev=OTHER),                      # another revision
        4: real(fingerprint="0" * 16),           # the leg ran other commands then
        3: {"buildername": LEG},                 # no got_revision at all
        2: real(**{props.DRY_RUN: False}),       # this one
        1: real(),                               # older: not chosen
    }
    build, queries = lookup(builds, properties)
    assert build["buildid"] == 2
    assert queries == 1                          # one query for all 6 candidates


def test_nothing_reusable():
    builds = [{"buildid": 1, "number": 1}, {"buildid": 2, "number": 2}]
    build, _ = lookup(builds, {1: real(rev=OTHER), 2: real(**{props.DRY_RUN: True})})
    assert build is None


def test_no_passing_builds_makes_no_query():
    build, queries = lookup([], {})
    assert build is None and queries == 0


def test_unknown_leg():
    master = FakeMaster([], {})
    fan_out = create_step_from_step_or_factory(gate.GateFanOut(MATRIX, SETTINGS))
    fan_out.master = master
    result = []
    fan_out.find_reusable("no-such-leg", REV).addCallback(result.append)
    assert result == [None]
