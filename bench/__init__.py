"""Load benchmarks: prefork against gunicorn (and others), side by side."""
