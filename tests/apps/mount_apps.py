"""Applications for tests/test_mount.py: two Flask sites meant to be mounted at /
and /admin, and a plain app that reports where it was mounted."""

from __future__ import annotations

import json

from flask import Flask, redirect, request, session, url_for

calls = {"count": 0}


def where(environ, start_response):
    """Answers with its name, SCRIPT_NAME and PATH_INFO as JSON."""
    calls["count"] += 1
    body = json.dumps(
        {
            "app": environ.get("ferrowsgi.test.name", "where"),
            "script_name": environ["SCRIPT_NAME"],
            "path_info": environ["PATH_INFO"],
            "query": environ["QUERY_STRING"],
            "calls": calls["count"],
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def named(name):
    def app(environ, start_response):
        environ["ferrowsgi.test.name"] = name
        return where(environ, start_response)

    return app


root = named("root")
api = named("api")
api_v2 = named("api_v2")


def make_site(name: str, cookie: str) -> Flask:
    """A Flask app with a login that stores the user in the session, then redirects."""
    app = Flask(name)
    app.secret_key = f"test-secret-{name}"
    app.config["SESSION_COOKIE_NAME"] = cookie

    @app.route("/")
    def index():
        return {"app": name, "login": url_for("login"), "whoami": url_for("whoami")}

    @app.route("/login", methods=["POST"])
    def login():
        session["user"] = request.form["user"]
        return redirect(url_for("whoami"))

    @app.route("/whoami")
    def whoami():
        return {"app": name, "user": session.get("user"), "url": request.url}

    return app


site = make_site("site", "site_session")
admin = make_site("admin", "admin_session")
