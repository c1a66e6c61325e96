"""The ``flask`` workload of benches/run.py: a Flask view returning ``jsonify`` of a small dict.

Kept apart from benches/apps.py so that only the flask runs import Flask.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

app = Flask("bench")


@app.route("/")
def index() -> Response:
    """A small JSON document, as an API endpoint answers."""
    return jsonify(message="Hello, World!", id=42, tags=["wsgi", "bench"], ok=True)
