"""The test suite, a package: helpers are imported by their path (``tests.server``,
``tests.web.helpers``), so files in different folders may share a name."""
