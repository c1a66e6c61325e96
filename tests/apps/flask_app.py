"""A Flask application: form POST, JSON, multipart upload, streaming, cookies, session."""

import hashlib

from flask import Flask, Response, jsonify, request, session

app = Flask(__name__)
app.secret_key = "test-only-secret"


@app.post("/form")
def form():
    return jsonify(name=request.form["name"], tags=request.form.getlist("tag"))


@app.post("/json")
def json_echo():
    data = request.get_json()
    return jsonify(received=data, total=sum(data["numbers"]))


@app.post("/upload")
def upload():
    f = request.files["file"]
    content = f.read()
    return jsonify(
        filename=f.filename,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/stream")
def stream():
    def lines():
        for i in range(100):
            yield f"line {i}\n"

    return Response(lines(), mimetype="text/plain")


@app.get("/set-cookie")
def set_cookie():
    resp = Response("cookie set")
    resp.set_cookie("flavour", "chocolate-chip")
    return resp


@app.get("/read-cookie")
def read_cookie():
    return jsonify(flavour=request.cookies.get("flavour"))


@app.post("/login")
def login():
    session["user"] = request.form["user"]
    return "logged in"


@app.get("/whoami")
def whoami():
    return jsonify(user=session.get("user"))
