"""moto's S3 server, answering one request at a time.

`moto_server` serves requests on threads, and its conditional PutObject checks
If-Match / If-None-Match and then stores the object in two steps, so two
concurrent conditional puts can both pass the check: an atomicity real S3 has
and threaded moto lacks. Serving requests one at a time makes each conditional
put atomic, as on S3, so the tests of concurrent writers test our code, not a
race inside the fake.

Usage: python moto_serial.py HOST PORT
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

run_simple(
    sys.argv[1],
    int(sys.argv[2]),
    DomainDispatcherApplication(create_backend_app),
    threaded=False,
    use_reloader=False,
)
