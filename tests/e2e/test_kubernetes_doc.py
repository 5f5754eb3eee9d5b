"""docs/kubernetes.md as a test: its ConfigMap's prefork.toml starts a real
server (addresses moved to port 0), its probes answer as the page says, and
its grace periods add up."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_metrics import fetch, metrics_port
from tests.server import ROOT, get, running

pytestmark = pytest.mark.timeout(60)

DOC = (ROOT / "docs" / "kubernetes.md").read_text()


def configmap_toml() -> str:
    m = re.search(r"^  prefork\.toml: \|\n((?:    .*\n|\s*\n)+)", DOC, re.M)
    assert m, "docs/kubernetes.md has no ConfigMap with a prefork.toml"
    return "\n".join(line[4:] for line in m.group(1).splitlines()) + "\n"


def test_the_configmap_serves_and_the_probes_answer(tmp_path):
    toml = configmap_toml()
    for key in ("bind", "metrics_bind", "control_socket", "graceful_timeout"):
        assert re.search(rf"^{key} = ", toml, re.M), f"{key} is not in the ConfigMap"
    # Same file, on this machine's loopback and temp dir.
    toml = re.sub(r'^bind = .*$', 'bind = ["127.0.0.1:0"]', toml, flags=re.M)
    toml = re.sub(r'^metrics_bind = "[^"]*"', 'metrics_bind = "127.0.0.1:0"', toml, flags=re.M)
    toml = re.sub(r'^control_socket = "[^"]*"', f'control_socket = "{tmp_path}/ctl"', toml,
                  flags=re.M)
    conf = tmp_path / "prefork.toml"
    conf.write_text(toml)
    with running("testapp:app", "-c", str(conf), one_worker=False) as srv:
        port = metrics_port(srv)
        probes = re.findall(r"httpGet: \{path: (/\w+), port: metrics\}", DOC)
        assert set(probes) == {"/readyz", "/livez"}
        for path in probes:
            assert fetch(port, path)[0] == 200, path
        assert get(srv, "/hello").status == 200


def test_the_grace_period_covers_the_pre_stop_sleep_and_graceful_timeout():
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", DOC).group(1))
    sleep = int(re.search(r"sleep: \{seconds: (\d+)\}", DOC).group(1))
    graceful = float(re.search(r"^graceful_timeout = ([\d.]+)", configmap_toml(), re.M).group(1))
    # The worker's KILL comes 2 s after graceful_timeout (supervisor.KILL_GRACE).
    assert grace > sleep + graceful + 2
