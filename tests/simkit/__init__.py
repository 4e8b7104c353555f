"""simkit: the toolkit the REST cloud simulators share (DigitalOcean now; Azure ARM and GCE later).

Modules: tls (throwaway CA + server certificate, WORKDIR/ca.pem), server (threaded HTTPS
server), app (the request pipeline with cloud hooks: auth, limits, error shapes), control (the
/_sim/ control API), faults (fault rules), logs (requests.jsonl, sim-errors.jsonl, redaction),
tcpfwd (TCP forwarder with a per-connection policy: public-address NAT plus firewalls), spec/
(validators: the shared interface, the strict unknown-field walker, OpenAPI 3.0). No module
knows a cloud. See tests/simkit/README.md.
"""

from .app import ApiError, Headers, Request, Response, SimApp
from .server import SimServer
from .spec import NO_BODY, OpenApi30, Problem, SpecValidator
from .tcpfwd import TcpForwarder
from .tls import make_tls, server_context

__all__ = ["ApiError", "Headers", "Request", "Response", "SimApp", "SimServer", "NO_BODY",
           "OpenApi30", "Problem", "SpecValidator", "TcpForwarder", "make_tls",
           "server_context"]
