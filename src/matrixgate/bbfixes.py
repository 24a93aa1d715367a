"""Fixes for Buildbot 4.3 bugs that break a gate, applied when the config is read.

**REST responses written from a thread.**  Buildbot 4.3 encodes a REST response in a
thread (``deferToThread(V2RootResource._write_json_data, ...)``, from Buildbot PR #8224)
and calls ``request.write`` from that thread as well.  Twisted's transports are not
thread-safe (twisted/twisted#11625).  When a client hangs up while its response is being
written, the reactor keeps a closed descriptor in its tables, and from then on every new
connection given that descriptor number fails with ``FileNotFoundError`` in
``epoll.modify``: the master accepts no web request and no worker until it is restarted.
Here, 400 clients that sent a request and hung up at once broke a master (plain Buildbot's
too); with real workers it happened in 5 of 12 starts while a client polled the REST API.

The replacement keeps the encoding in the thread (large responses do not block the
reactor) and hands the finished body to the reactor thread, which writes it.  The
Buildbot method's own checks stay: work stops once the client has gone.
"""

from __future__ import annotations

from twisted.python import log

#: The Buildbot version these fixes were written against (pyproject.toml pins it).  On
#: another version the fix is not applied and the master logs why: re-check the bug first.
FIXED_IN_VERSION = "4.3.0"

#: encoder chunks between two looks at whether the client is still there
CHECK_EVERY = 256


def _in_reactor(f, *args) -> None:
    """Hands ``f(*args)`` to the reactor thread (replaced in tests).

    It runs there before Buildbot's ``deferToThread`` delivers this thread's result, and so
    before Buildbot finishes the request: both go through ``callFromThread``, whose queue
    is first in, first out.  Not waiting for it matters at shutdown, when the reactor
    joins its pool's threads and would never run a call one of them waited for."""
    from twisted.internet import reactor
    reactor.callFromThread(f, *args)


def write_json_data(request, encoder, data) -> None:
    """``V2RootResource._write_json_data``, run in a thread by Buildbot: encodes here,
    writes in the reactor thread."""
    from buildbot.www.rest import _is_request_finished

    chunks = []
    for i, chunk in enumerate(encoder.iterencode(data)):
        # reading the request's state from here is what Buildbot already does
        if i % CHECK_EVERY == 0 and _is_request_finished(request):
            return
        chunks.append(chunk)
    body = "".join(chunks).encode("utf-8")
    _in_reactor(_send, request, body)


def _send(request, body: bytes) -> None:
    from buildbot.www.rest import _is_request_finished

    if _is_request_finished(request):
        return
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    if request.method != b"HEAD":
        request.write(body)


def apply() -> bool:
    """Installs the fixes (once).  Returns whether they are in place."""
    import buildbot
    from buildbot.www.rest import V2RootResource

    current = V2RootResource.__dict__.get("_write_json_data")
    if isinstance(current, staticmethod) and current.__func__ is write_json_data:
        return True
    if buildbot.version != FIXED_IN_VERSION:
        log.msg(f"matrixgate: Buildbot {buildbot.version} is not {FIXED_IN_VERSION}: the fix for REST "
                "responses written from a thread is not applied (see matrixgate/bbfixes.py)")
        return False
    V2RootResource._write_json_data = staticmethod(write_json_data)
    return True
