"""testapp wrapped in wsgiref.validate, with its warnings made errors.

Any PEP 3333 violation by the server (environ types, wsgi.input, start_response)
raises inside the request, which the test sees as a 500.
"""

import warnings
from wsgiref.validate import validator

import testapp

warnings.simplefilter("error")

app = validator(testapp.app)
