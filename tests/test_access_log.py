"""The access log copies what a line needs at request time; the lines are
the same as formatting the whole environ later."""

from __future__ import annotations

import json
import re
import time

import pytest

from prefork.log import (
    _EXPRESSIONS,
    DEFAULT_ACCESS_FORMAT,
    AccessLog,
    compile_format,
    compile_positional,
)

ENVIRON = {
    "REQUEST_METHOD": "POST", "RAW_URI": "/a%20b?x=1", "PATH_INFO": "/a b", "QUERY_STRING": "x=1",
    "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.7", "HTTP_REFERER": 'http://r/"q"',
    "HTTP_USER_AGENT": "probe/2\x01", "HTTP_X_TRACE": "t-1", "wsgi.url_scheme": "https",
    "wsgi.input": object(), "HTTP_COOKIE": "secret=1",
}
HEADERS = [("Content-Type", "text/plain"), ("X-Cache", "hit")]
# Every atom but %(t)s (the wall-clock second, taken when the line is written).
EVERY_ATOM = " ".join(f"%({a})s" for a in _EXPRESSIONS if a != "t") + \
    " %({X-Trace}i)s %({X-Missing}i)s %({Content-Type}o)s %({x-cache}o)s" \
    " %({wsgi.url_scheme}e)s %({no.such.key}e)s"


def _log_one(path, fmt):
    log = AccessLog(str(path), fmt)
    start = float(int(time.monotonic()))     # whole seconds: the duration 0.5 is exact
    log.log(dict(ENVIRON), "201 Created", 42, list(HEADERS), start, start + 0.5)
    queued = log.pending[0]
    log.close()
    return queued, path.read_text()


@pytest.mark.parametrize("fmt", [EVERY_ATOM, "%(s)s %(b)s", '"%(r)s" %(a)s'])
def test_lines_from_the_queue_match_the_whole_environ(tmp_path, fmt):
    queued, text = _log_one(tmp_path / "access.log", fmt)
    keys, wants_headers, _ = compile_positional(fmt)
    # Only what the format reads is kept: not the body, not the cookies.
    assert len(queued[0]) == len(keys) and "secret=1" not in repr(queued)
    assert (queued[3] == HEADERS) == wants_headers == ("}o)s" in fmt)
    expected = compile_format(fmt)(ENVIRON, "201 Created", 42, HEADERS, 0.5, time.time())
    assert text == expected + "\n"


def test_default_format_line(tmp_path):
    _, text = _log_one(tmp_path / "access.log", DEFAULT_ACCESS_FORMAT)
    assert re.fullmatch(r'10\.0\.0\.7 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"POST /a%20b\?x=1 HTTP/1\.1" 201 42 "http://r/\\x22q\\x22" '
                        r'"probe/2\\x01"\n', text), text


def test_json_lines_keep_every_field(tmp_path):
    _, text = _log_one(tmp_path / "access.jsonl", "json")
    record = json.loads(text)
    assert record["remote_addr"] == "10.0.0.7" and record["method"] == "POST"
    assert record["path"] == "/a%20b?x=1" and record["protocol"] == "HTTP/1.1"
    assert record["referer"] == 'http://r/"q"' and record["user_agent"] == "probe/2\x01"
    assert record["status"] == 201 and record["bytes"] == 42 and record["duration_us"] == 500000
    assert abs(time.mktime(time.strptime(record["time"][:19], "%Y-%m-%dT%H:%M:%S"))
               - time.time()) < 5
