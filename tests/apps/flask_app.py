"""A Flask (WSGI) app for tests/python/test_wsgi_frameworks.py.

    /                 "Hello from Flask"
    /json             POST: {"got": request.get_json(), "method", "content_type"}
    /form             POST (urlencoded or multipart): the form fields, and for a file field
                      "upload" its filename, size and sha256
    /stream           stream_with_context: `n` lines "line <i> of <name>\n" (query: n, name)
    /file             send_file(path) (query: path)
    /boom             raises RuntimeError("flask-boom")
    /where            {"url_for_hello", "script_root", "path", "url", "scheme", "host"}
    /path/<name>      {"name": name, "q": request.args.get("q")}
"""

from __future__ import annotations

import hashlib

from flask import Flask, Response, jsonify, request, send_file, stream_with_context, url_for

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello from Flask"


@app.post("/json")
def json_echo():
    return jsonify(got=request.get_json(), method=request.method,
                   content_type=request.content_type)


@app.post("/form")
def form():
    result = {"fields": request.form.to_dict()}
    upload = request.files.get("upload")
    if upload is not None:
        data = upload.read()
        result["file"] = {"filename": upload.filename, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest(),
                          "content_type": upload.content_type}
    return jsonify(result)


@app.get("/stream")
def stream():
    count = int(request.args.get("n", "3"))

    def lines():
        for i in range(count):
            # request is still usable here: stream_with_context keeps its context alive.
            yield f"line {i} of {request.args.get('name', 'nobody')}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/file")
def file():
    return send_file(request.args["path"], mimetype="application/octet-stream")


@app.get("/boom")
def boom():
    raise RuntimeError("flask-boom")


@app.get("/where")
def where():
    return jsonify(url_for_hello=url_for("hello"), script_root=request.script_root,
                   path=request.path, url=request.url, scheme=request.scheme,
                   host=request.host)


@app.get("/path/<name>")
def path(name):
    return jsonify(name=name, q=request.args.get("q"))
