"""The benchmark harness itself runs (for about a second per server).

Speed is not asserted here (timings on a shared CI machine are noise): only
that both servers were measured and a ratio came out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(30)
def test_bench_harness_runs_one_short_case():
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk; .ci/run and make bench do it)")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--rounds", "1", "--duration", "1", "--only", "hello",
         "--modes", "keepalive", "--connections", "16", "--no-starvation", "--no-write"],
        capture_output=True, text=True, timeout=28, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"^ratio hello keepalive c=16: ([\d.]+)$", proc.stdout, re.M)
    assert m, proc.stdout
    assert float(m.group(1)) > 0          # both servers served requests
    assert "ERRORS" not in proc.stdout


WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:40000/
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    17.06ms   20.11ms 400.00ms   91.00%
    Req/Sec     3.20k   200.00     3.50k    70.00%
  Latency Distribution
     50%   17.06ms
     75%   20.00ms
     90%   30.00ms
     99%   56.67ms
  9606 requests in 3.00s, 4.20MB read
Requests/sec:   3202.00
Transfer/sec:      1.40MB
"""


def test_wrk_output_parsed_and_starved_connections_flagged(monkeypatch):
    # The row that once hid starvation: 3202 req/s x 17.06 ms mean = ~55 of
    # 256 connections with a request in flight.
    from bench import compare

    def fake_run(argv, **kw):
        return subprocess.CompletedProcess(argv, 0, WRK_OUTPUT, "")

    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    r = compare.wrk(40000, 256, 3, close=False, pin=False)
    assert r["rps"] == 3202.0 and r["p50"] == 17.06 and r["p99"] == 56.67
    assert r["active"] == pytest.approx(54.6, abs=0.1)
    assert compare._starved(r["active"], 256, "keepalive")
    assert not compare._starved(250.0, 256, "keepalive")
    assert not compare._starved(r["active"], 256, "close")   # connects take their share there
