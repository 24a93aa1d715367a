"""The gate's reuse lookup (``GateFanOut.find_reusable``) against Buildbot's real ``builds``
and ``build_properties`` tables: one query for every leg, the newest passing, real build at
the revision with the leg's current fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
from buildbot.db.model import Model
from buildbot.process.buildstep import create_step_from_step_or_factory
from buildbot.process.results import FAILURE, SUCCESS
from twisted.internet import defer

from matrixgate import gate, loader, props
from matrixgate.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MATRIX = loader.load_matrix(REPO / "matrix" / "matrix.yaml")
SETTINGS = Settings(basedir=Path("/tmp/matrixgate-master"), repo_url="/srv/git/platform.git")
LEG, OTHER_LEG = "chainfire-flaredb", "creditservice-nightlight"
BUILDERIDS = {LEG: 7, OTHER_LEG: 8}
FINGERPRINT = MATRIX.leg(LEG).fingerprint
REV = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


class FakeMaster:
    """Just what find_reusable touches: the builders, the DB pool and model, and the data
    API's single-build read."""

    def __init__(self, builds: list[tuple], properties: dict[int, dict]):
        self.engine = sa.create_engine("sqlite://")
        with self.engine.begin() as conn:
            Model.builds.create(conn)
            Model.build_properties.create(conn)
            for buildid, leg, results in builds:
                conn.execute(Model.builds.insert().values(
                    id=buildid, number=buildid, builderid=BUILDERIDS[leg], buildrequestid=buildid, masterid=1,
                    started_at=0, locks_duration_s=0, state_string="", results=results))
            for buildid, values in properties.items():
                for name, value in values.items():
                    conn.execute(Model.build_properties.insert().values(
                        buildid=buildid, name=name, value=json.dumps(value), source="test"))
        self.queries = 0
        self.botmaster = SimpleNamespace(builders={
            leg: SimpleNamespace(getBuilderId=lambda builderid=builderid: defer.succeed(builderid))
            for leg, builderid in BUILDERIDS.items()})
        self.data = SimpleNamespace(get=lambda path, **kw: defer.succeed({"buildid": path[1]}))
        self.db = SimpleNamespace(model=Model, pool=SimpleNamespace(do=self.do))

    def do(self, thd, *args):
        self.queries += 1
        with self.engine.connect() as conn:
            return defer.succeed(thd(conn, *args))


def lookup(builds, properties, legs=(LEG,), revision=REV):
    master = FakeMaster(builds, properties)
    fan_out = create_step_from_step_or_factory(gate.GateFanOut(MATRIX, SETTINGS))
    fan_out.master = master
    result = []
    fan_out.find_reusable(list(legs), revision).addCallback(result.append)
    assert result, "find_reusable did not finish synchronously with synchronous fakes"
    return {leg: build["buildid"] for leg, build in result[0].items()}, master.queries


def real(rev=REV, fingerprint=FINGERPRINT, **extra):
    return {"got_revision": rev, "leg_fingerprint": fingerprint, "buildername": LEG, **extra}


def test_newest_real_passing_build_at_the_revision_is_reused():
    builds = [(i, LEG, SUCCESS) for i in (1, 2, 3, 4, 5, 6)] + [(7, LEG, FAILURE)]
    properties = {
        7: real(),                               # failed: never reused
        6: real(**{props.DRY_RUN: True}),        # a dry run: never reused
        5: real(rev=OTHER),                      # another revision
        4: real(fingerprint="0" * 16),           # the leg ran other commands then
        3: {"buildername": LEG},                 # no got_revision at all
        2: real(**{props.DRY_RUN: False}),       # this one
        1: real(),                               # older: not chosen
    }
    found, queries = lookup(builds, properties)
    assert found == {LEG: 2}
    assert queries == 1                          # one round trip for every candidate


def test_every_leg_in_one_query():
    other = MATRIX.leg(OTHER_LEG).fingerprint
    builds = [(1, LEG, SUCCESS), (2, OTHER_LEG, SUCCESS), (3, OTHER_LEG, SUCCESS)]
    properties = {1: real(), 2: real(fingerprint=other), 3: real(fingerprint=FINGERPRINT)}  # 3: LEG's print
    found, queries = lookup(builds, properties, legs=(LEG, OTHER_LEG))
    assert found == {LEG: 1, OTHER_LEG: 2} and queries == 1


def test_nothing_reusable():
    builds = [(1, LEG, SUCCESS), (2, LEG, SUCCESS)]
    found, _ = lookup(builds, {1: real(rev=OTHER), 2: real(**{props.DRY_RUN: True})})
    assert found == {}


def test_unknown_leg_makes_no_query():
    found, queries = lookup([], {}, legs=("no-such-leg",))
    assert found == {} and queries == 0
