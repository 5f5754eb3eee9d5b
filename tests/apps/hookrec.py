"""Server hooks that append a line per call to $HOOK_RECORD; pre_request also raises."""

import os


def _rec(line):
    with open(os.environ["HOOK_RECORD"], "a") as f:
        f.write(line + "\n")


def on_starting(server): _rec(f"on_starting {server.pid}")
def when_ready(server): _rec(f"when_ready {server.workers}")
def pre_fork(server, worker): _rec(f"pre_fork {worker.number}")
def post_fork(server, worker): _rec(f"post_fork {worker.pid}")
def post_worker_init(worker): _rec(f"post_worker_init {worker.pid}")
def child_exit(server, worker): _rec(f"child_exit {worker.pid} {worker.exit_code}")
def worker_exit(server, worker): _rec(f"worker_exit {worker.pid}")
def on_exit(server): _rec("on_exit")
def nworkers_changed(server, new, old): _rec(f"nworkers_changed {old} {new}")


def pre_request(worker, environ):
    _rec(f"pre_request {environ['PATH_INFO']}")
    raise RuntimeError("a hook with a bug")


def post_request(worker, environ, status):
    _rec(f"post_request {environ['REQUEST_METHOD']} {environ['PATH_INFO']} {status}")
def on_reload(server): _rec(f"on_reload {server.generation}")
def worker_int(worker): _rec(f"worker_int {worker.pid}")
def worker_abort(worker): _rec(f"worker_abort {worker.pid}")
