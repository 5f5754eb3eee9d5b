"""An example Django project served by prefork (see examples/README.md)."""
