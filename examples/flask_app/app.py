"""An example Flask app served by prefork: ``prefork start app:app``.

Run it with ``examples/flask_app`` on the import path (``PYTHONPATH`` or the
working directory). Files for ``/download/<name>`` come from ``files/`` next to
this module, or from ``FLASK_APP_DOWNLOAD_DIR`` when set.
"""

import hashlib
import os
import time
from pathlib import Path

from flask import (
    Flask,
    abort,
    jsonify,
    render_template_string,
    request,
    send_from_directory,
    stream_with_context,
)

app = Flask(__name__)
app.config["DOWNLOAD_DIR"] = Path(
    os.environ.get("FLASK_APP_DOWNLOAD_DIR") or Path(__file__).resolve().parent / "files"
)
# Bodies larger than this get 413 from Flask itself (the server has its own limit).
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024

PAGE = """<!doctype html>
<title>{{ title }}</title>
<h1>Hello, {{ name }}!</h1>
<p>Served by {{ server }}.</p>
"""


@app.get("/")
def hello():
    name = request.args.get("name", "World")
    return render_template_string(
        PAGE, title="prefork + Flask", name=name,
        server=request.environ.get("SERVER_SOFTWARE", "an unknown server"),
    )


@app.get("/json")
def json_view():
    return jsonify(message="hello", items=[1, 2, 3], nested={"ok": True})


@app.get("/inspect")
def inspect():
    """Query parameters and headers as the app sees them."""
    return jsonify(
        method=request.method,
        path=request.path,
        args={key: request.args.getlist(key) for key in request.args},
        headers={key: value for key, value in request.headers.items()
                 if key.lower().startswith("x-") or key.lower() in ("user-agent", "host")},
        remote_addr=request.remote_addr,
        url=request.url,
    )


@app.post("/form")
def form():
    """urlencoded or multipart form data, files summarised by their digest."""
    files = {}
    for key, storage in request.files.items():
        data = storage.read()
        files[key] = {"filename": storage.filename, "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest(),
                      "content_type": storage.content_type}
    return jsonify(fields={key: request.form.getlist(key) for key in request.form}, files=files)


@app.post("/upload")
def upload():
    """The raw body's sha256: ``?mode=stream`` reads request.stream in blocks,
    the default reads it at once with request.get_data()."""
    digest = hashlib.sha256()
    length = 0
    if request.args.get("mode") == "stream":
        while block := request.stream.read(65536):
            digest.update(block)
            length += len(block)
    else:
        data = request.get_data(cache=False)
        digest.update(data)
        length = len(data)
    return jsonify(length=length, sha256=digest.hexdigest(),
                   content_length=request.environ.get("CONTENT_LENGTH"))


@app.get("/stream")
def stream():
    """A generator body: Flask cannot know its length, so the server frames it."""
    count = min(request.args.get("n", 5, type=int), 10_000)
    delay = min(request.args.get("delay", 0.0, type=float), 1.0)
    fail_at = request.args.get("fail_at", -1, type=int)  # to see a stream break off

    @stream_with_context
    def lines():
        for i in range(count):
            if delay and i:
                time.sleep(delay)
            if i == fail_at:
                raise RuntimeError(f"stream failed at line {i}")
            yield f"{request.path} line {i}\n"

    return app.response_class(lines(), mimetype="text/plain")


@app.get("/download/<name>")
def download(name):
    """send_file (through send_from_directory, which refuses paths outside the folder)."""
    return send_from_directory(app.config["DOWNLOAD_DIR"], name, as_attachment=True)


@app.get("/boom")
def boom():
    raise RuntimeError("boom: this route always fails")


@app.get("/teapot")
def teapot():
    abort(418)


if __name__ == "__main__":
    import prefork

    raise SystemExit(prefork.serve(app, bind="127.0.0.1:8000", threads=4))
