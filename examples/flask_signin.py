"""A Flask application with a sign-in form: ferrowsgi serves any WSGI framework.

Run it from the repository root:

    ferrowsgi examples.flask_signin:app

* ``GET /`` → ``<h1>Home</h1>``
* ``GET /signin`` → a form posting ``username`` and ``password`` to ``/signin``
* ``POST /signin`` → ``<h3>Hello, admin!</h3>`` for admin / password, else
  ``<h3>Bad username or password.</h3>``

Try it without a browser:

    curl -d username=admin -d password=password http://127.0.0.1:8000/signin
"""

from flask import Flask, request, url_for

app = Flask(__name__)

FORM = """<form action="{action}" method="post">
<p><input name="username"></p>
<p><input name="password" type="password"></p>
<p><button type="submit">Sign In</button></p>
</form>"""


@app.get("/")
def home() -> str:
    """The home page."""
    return "<h1>Home</h1>"


@app.get("/signin")
def signin_form() -> str:
    """The sign-in form; it posts back to this same URL."""
    return FORM.format(action=url_for("signin"))


@app.post("/signin")
def signin() -> str:
    """Check the posted credentials (a missing field counts as wrong)."""
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    if username == "admin" and password == "password":
        return "<h3>Hello, admin!</h3>"
    return "<h3>Bad username or password.</h3>"
