"""The HTTP/1.1 engine: a sans-I/O parser, per-connection state, and the WSGI bridge."""
