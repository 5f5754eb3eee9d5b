"""An exception while one connection is read, parsed or spooled closes that
connection (with a 400 or a 500 where an answer is still possible), is logged
once with its traceback, and leaves the worker and every other connection alone.
"""

from __future__ import annotations

import json
import shutil
import socket
import time

import pytest

from tests.hostile.kit import HELLO, assert_serving, exchange
from tests.server import HTTPReader, running, workers_of

pytestmark = pytest.mark.timeout(60)

CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_bad_chunk_line_in_a_later_packet_is_400_not_a_dead_worker():
    # The body parser raised out of the loop when the bad bytes came in a
    # read of their own, after the head: that killed the worker.
    with running("testapp:app") as srv:
        pids = workers_of(srv)
        with srv.connect() as s:
            s.sendall(CHUNKED_HEAD + b"5\r\nhello\r\n")
            time.sleep(0.2)
            s.sendall(b"zz\r\n")
            r = HTTPReader(s).read_response()
        assert r.status == 400
        assert_serving(srv, pids)


def test_missing_upload_directory_is_500_for_that_request_only(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    with running("testapp:app", "--spool-threshold", "1024", "--tmp-upload-dir", str(uploads),
                 "--threads", "2") as srv:
        pids = workers_of(srv)
        # Another client in the middle of a kept-alive exchange meanwhile.
        other = srv.connect()
        other.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        other_reader = HTTPReader(other)
        assert other_reader.read_response().status == 200
        shutil.rmtree(uploads)
        body = b"x" * 5000
        r = exchange(srv, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + body)
        assert r is not None and r.status == 500
        # The kept-alive connection still works, the worker is the same one.
        other.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert other_reader.read_response().status == 200
        other.close()
        assert_serving(srv, pids)
        assert srv.log.count("FileNotFoundError") == 1, srv.log
        assert "error reading a request from 127.0.0.1" in srv.log
        # Once the directory is back, uploads work again.
        uploads.mkdir()
        r = exchange(srv, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + body)
        assert r is not None and r.status == 200 and json.loads(r.body)["length"] == 5000


def test_spooling_failure_of_a_pipelined_request_in_a_pool_thread_is_500(tmp_path):
    # The first request is served by a pool thread, which then parses the
    # pipelined second one itself and has to spool its body.
    uploads = tmp_path / "gone"
    with running("testapp:app", "--spool-threshold", "1024",
                 "--tmp-upload-dir", str(uploads)) as srv:
        pids = workers_of(srv)
        first = b"GET /sleep?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
        second = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n" + b"y" * 3000
        with srv.connect() as s:
            s.sendall(first + second)
            reader = HTTPReader(s)
            assert reader.read_response().status == 200
            assert reader.read_response().status == 500
            assert reader.at_eof()
        assert_serving(srv, pids)
        assert "error reading a pipelined request" in srv.log


def test_many_failing_uploads_at_once_leave_other_clients_served(tmp_path):
    uploads = tmp_path / "gone"
    with running("testapp:app", "--spool-threshold", "100", "--tmp-upload-dir", str(uploads)) as srv:
        pids = workers_of(srv)
        socks = []
        for _ in range(20):
            s = srv.connect()
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"z" * 500)
            socks.append(s)
        for s in socks:
            assert HTTPReader(s).read_response().status == 500
            s.close()
        assert exchange(srv, HELLO).status == 200
        assert_serving(srv, pids)
        # One traceback, then a line for each repeat: a flood fills no disk.
        assert srv.log.count("Traceback") == 1
        assert srv.log.count("(traceback logged before)") == 19


def test_peer_reset_in_the_middle_of_a_body_is_only_that_connection():
    with running("testapp:app") as srv:
        pids = workers_of(srv)
        for _ in range(10):
            s = srv.connect()
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()       # RST
        assert_serving(srv, pids)
