"""What a program started by the application inherits from its worker.

A view that runs ``subprocess.Popen(...)`` must get a process it can stop:
the pool thread's signal mask is kept across exec, so blocked signals in the
thread that runs the app would make ``terminate()`` do nothing.
"""

from __future__ import annotations

import json

import pytest

from tests.server import get, running

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("threads", ["1", "4"])
def test_a_subprocess_of_a_view_has_no_blocked_signal_and_terminate_stops_it(threads):
    with running("testapp:app", "--threads", threads) as srv:
        for _ in range(3):      # whichever pool thread takes it
            r = get(srv, "/subprocess-signals")
            assert r.status == 200, r.body
            data = json.loads(r.body)
            assert int(data["blocked"], 16) == 0, f"signals blocked in the child: {data}"
            assert data["returncode"] == -15, data
