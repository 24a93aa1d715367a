"""The Buildbot 4.3 fix for REST responses written from a thread (src/matrixgate/bbfixes.py)."""

from __future__ import annotations

import json
import queue
import threading

import buildbot
import pytest
from buildbot.www.rest import V2RootResource

from matrixgate import bbfixes


class FakeRequest:
    """What the writer touches of a twisted.web request; records the thread of each call."""

    def __init__(self, method=b"GET"):
        self.method = method
        self.finished = False
        self.channel = object()
        self.headers = {}
        self.written = []
        self.threads = []

    def setHeader(self, name, value):
        self.threads.append(threading.current_thread())
        self.headers[name] = value

    def write(self, data):
        self.threads.append(threading.current_thread())
        self.written.append(data)


@pytest.fixture
def reactor_thread(monkeypatch):
    """The test's thread plays the reactor: calls handed to it run here, in order."""
    calls: queue.Queue = queue.Queue()

    def in_reactor(f, *args):
        calls.put((f, args))

    monkeypatch.setattr(bbfixes, "_in_reactor", in_reactor)

    def run_in_a_thread(target, *args):
        worker = threading.Thread(target=target, args=args)
        worker.start()
        while worker.is_alive() or not calls.empty():
            try:
                f, fargs = calls.get(timeout=0.05)
            except queue.Empty:
                continue
            f(*fargs)
        worker.join()

    return run_in_a_thread


DATA = {"forceschedulers": [{"name": f"force-{i}", "fields": list(range(50))} for i in range(40)]}


def encoder():
    return json.JSONEncoder(sort_keys=True, indent=2)


def test_the_body_is_encoded_in_the_thread_and_written_by_the_reactor(reactor_thread):
    request = FakeRequest()
    reactor_thread(bbfixes.write_json_data, request, encoder(), DATA)
    body = b"".join(request.written)
    assert json.loads(body) == DATA
    assert request.headers[b"content-length"] == str(len(body)).encode()
    # every call on the request came from the reactor (this) thread, none from Buildbot's
    assert request.threads and set(request.threads) == {threading.current_thread()}


def test_head_gets_the_length_and_no_body(reactor_thread):
    request = FakeRequest(method=b"HEAD")
    reactor_thread(bbfixes.write_json_data, request, encoder(), DATA)
    assert request.written == [] and int(request.headers[b"content-length"]) > 1000


def test_nothing_is_written_to_a_client_that_has_gone(reactor_thread):
    request = FakeRequest()
    request.channel = None                         # the connection was lost
    reactor_thread(bbfixes.write_json_data, request, encoder(), DATA)
    assert request.written == [] and request.headers == {}


def test_gone_while_encoding(reactor_thread, monkeypatch):
    request = FakeRequest()
    chunks = encoder().iterencode(DATA)

    def hang_up_midway(data):
        for i, chunk in enumerate(chunks):
            if i == bbfixes.CHECK_EVERY * 2:
                request.finished = True
            yield chunk

    gone = encoder()
    monkeypatch.setattr(gone, "iterencode", hang_up_midway)
    reactor_thread(bbfixes.write_json_data, request, gone, DATA)
    assert request.written == []


def test_apply_installs_the_fix_once(monkeypatch):
    # Buildbot's own method stands in here (another test may have applied the fix already)
    monkeypatch.setattr(V2RootResource, "_write_json_data", staticmethod(lambda request, encoder, data: None))
    assert bbfixes.apply() is True
    assert V2RootResource.__dict__["_write_json_data"].__func__ is bbfixes.write_json_data
    assert bbfixes.apply() is True                 # idempotent (a reconfig reads the config again)
    assert V2RootResource.__dict__["_write_json_data"].__func__ is bbfixes.write_json_data


def test_another_buildbot_version_is_left_alone(monkeypatch):
    buildbots_own = staticmethod(lambda request, encoder, data: None)
    monkeypatch.setattr(V2RootResource, "_write_json_data", buildbots_own)
    monkeypatch.setattr(buildbot, "version", "4.4.0")
    assert bbfixes.apply() is False
    assert V2RootResource.__dict__["_write_json_data"] is buildbots_own


def test_the_pinned_buildbot_is_the_one_the_fix_is_for():
    # on an upgrade this fails first: re-check whether Buildbot still writes from a thread
    assert buildbot.version == bbfixes.FIXED_IN_VERSION
