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
