"""An app built by a factory: prefork start 'factoryapp:create_app("staging", 3)'."""


def create_app(name="default", copies=1):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{name}x{copies}".encode()]
    return app


application = create_app("module-level")
