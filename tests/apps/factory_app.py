"""An application factory: ``factory_app:create_app()`` must call it exactly once."""

CALLS = 0


def create_app():
    global CALLS
    CALLS += 1

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"factory calls: {CALLS}".encode()]

    return app
