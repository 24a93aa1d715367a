"""The users file (src/matrixgate/users.py): hashed passwords, roles, first-start admin."""

from __future__ import annotations

import stat

import pytest

from matrixgate import users

FAST = 1000   # iterations for tests that do not test the default cost


@pytest.fixture
def cheap_hashes(monkeypatch):
    """set_user/ensure_admin hash with the default cost (200,000 rounds): cheaper here."""
    monkeypatch.setattr(users.hash_password, "__defaults__", (None, FAST))


def test_hash_check_round_trip():
    stored = users.hash_password("correct horse", iterations=FAST)
    scheme, iterations, salt, digest = stored.split("$")
    assert (scheme, iterations) == ("pbkdf2_sha256", str(FAST))
    assert users.check_password("correct horse", stored)
    assert not users.check_password("correct horse ", stored)
    assert not users.check_password("", stored)
    assert "correct horse" not in stored


def test_default_cost_and_random_salt():
    a = users.hash_password("pw")
    assert a.split("$")[1] == str(users.ITERATIONS) == "200000"
    assert users.check_password("pw", a)
    b, c = users.hash_password("pw", iterations=FAST), users.hash_password("pw", iterations=FAST)
    assert b != c                                    # a fresh salt each time


def test_given_salt_is_deterministic():
    assert users.hash_password("pw", salt=b"s" * 16, iterations=FAST) == \
        users.hash_password("pw", salt=b"s" * 16, iterations=FAST)


@pytest.mark.parametrize("stored", [
    "", "plain-text-password", "md5$1$c2FsdA==$ZGlnZXN0", "pbkdf2_sha256$many$c2FsdA==$ZGlnZXN0",
    "pbkdf2_sha256$1000$!!!$ZGlnZXN0", "pbkdf2_sha256$1000$c2FsdA==",
])
def test_check_password_refuses_malformed_hashes(stored):
    assert users.check_password("anything", stored) is False


def test_parse():
    stored = users.hash_password("pw", iterations=FAST)
    parsed = users.parse(f"# comment\n\nalice:{stored}:releasers,admins\n  bob:{stored}:  \n")
    assert parsed == {
        "alice": users.User("alice", stored, ("releasers", "admins")),
        "bob": users.User("bob", stored, ()),
    }


@pytest.mark.parametrize("text, message", [
    ("alice", "users file line 1: expected name:hash:roles"),
    ("# c\nalice:hash", "users file line 2: expected name:hash:roles"),
    ("alice:a:b:c", "users file line 1: expected name:hash:roles"),
    ("-alice:hash:users", "users file line 1: expected name:hash:roles"),
    ("al ice:hash:users", "users file line 1: expected name:hash:roles"),
    ("alice:hash:Admins", "users file line 1: bad role name 'Admins'"),
    ("alice:hash:users,rel eases", "users file line 1: bad role name 'rel eases'"),
])
def test_parse_errors(text, message):
    with pytest.raises(ValueError) as info:
        users.parse(text)
    assert str(info.value) == message


def test_set_user_save_load(tmp_path, cheap_hashes):
    path = tmp_path / "users"
    assert users.load(path) == {}
    users.set_user(path, "alice", "pw-a", ("releasers",))
    users.set_user(path, "bob", "pw-b", ())
    users.set_user(path, "alice", "pw-a2", ("releasers", "admins"))       # replaces alice
    loaded = users.load(path)
    assert sorted(loaded) == ["alice", "bob"]
    assert loaded["alice"].roles == ("releasers", "admins")
    assert users.check_password("pw-a2", loaded["alice"].password_hash)
    assert not users.check_password("pw-a", loaded["alice"].password_hash)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "users.tmp").exists()
    assert path.read_text().startswith("# Matrix Gate users")
    with pytest.raises(ValueError, match="'bad name' is not a valid user name"):
        users.set_user(path, "bad name", "pw", ())


def test_ensure_admin_creates_once(tmp_path, cheap_hashes):
    path = tmp_path / "users"
    password = users.ensure_admin(path)
    assert password and len(password) >= 16
    admin = users.load(path)["admin"]
    assert admin.roles == ("releasers", "admins")
    assert users.check_password(password, admin.password_hash)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()
    assert users.ensure_admin(path) is None
    assert path.read_text() == before                 # the existing file is left alone
