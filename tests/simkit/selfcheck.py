#!/usr/bin/env python3
"""Self-check of simkit alone (no root, no cloud; about 3 s; plain asserts).

    $PY tests/simkit/selfcheck.py

Covers: the OpenAPI 3.0 validator on the real DigitalOcean and Kubernetes specs (read at run
time from ../shared/specs): operation matching (literal beats templated), parameter coercion
(anyOf integer|string), unknown and read-only body fields, the oneOf branch a bad field is
reported in, wildcard media types, response checks (required headers, errata); the strict walker
on a toy schema; fault rules (method, path, after, count); redaction; a toy SimApp behind the
TLS server (auth hook, faults, phase marks, the request log, an exception → 500 + sim error,
keep-alive, chunked bodies, the loopback-only control API); the crash-point gate (counts,
holds, drops, ignores reads and ignored paths); and the TCP forwarder's three verdicts on
loopback addresses.
"""

import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
SPECS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "shared", "specs")

from simkit import (ApiError, NO_BODY, OpenApi30, Response, SimApp, SimServer,  # noqa: E402
                    TcpForwarder, make_tls, server_context)
from simkit.faults import Faults  # noqa: E402
from simkit.gate import Gate, GateError  # noqa: E402
from simkit.logs import redact  # noqa: E402
from simkit.spec import StrictWalker  # noqa: E402


def ok(msg):
    print(f"  ok  {msg}", flush=True)


def check_specs():
    do = OpenApi30(os.path.join(SPECS, "digitalocean", "DigitalOcean-public.v2.subset.bundled.json"),
                   uri="urn:check:do", require_response_headers=("ratelimit-limit",),
                   errata=[{"where": "response", "kind": "unknown",
                            "pointer": r"/tag/resources/images", "why": "spec typo"}])
    assert do.find("POST", "/v2/droplets/actions").op.id == "dropletActions_post_byTag"
    assert do.find("GET", "/v2/droplets/7").op.id == "droplets_get"
    m, allowed = do.match("PUT", "/v2/droplets")
    assert m is None and allowed == ["DELETE", "GET", "POST"], allowed
    m = do.find("GET", "/v2/images/7")
    assert do.check_request(m, {}, {}, NO_BODY)[1]["path"]["image_id"] == 7
    m = do.find("GET", "/v2/images/ubuntu-24-04-x64")
    assert do.check_request(m, {}, {}, NO_BODY)[1]["path"]["image_id"] == "ubuntu-24-04-x64"
    m = do.find("GET", "/v2/droplets/x")
    probs, _ = do.check_request(m, {"page": ["1"]}, {}, NO_BODY)
    assert [(p.where, p.kind) for p in probs] == [("path", "type"), ("query", "unknown")], probs
    json_h = {"content-type": "application/json"}
    m = do.find("POST", "/v2/droplets")
    probs, _ = do.check_request(m, {}, json_h, {"name": "a_b", "size": "s", "image": "i"})
    assert [(p.pointer, p.kind) for p in probs] == [("/name", "pattern")], probs
    probs, _ = do.check_request(m, {}, json_h, {"name": "ab", "size": "s", "image": 1, "x": 1})
    assert [(p.pointer, p.kind) for p in probs] == [("/x", "unknown")], probs
    probs, _ = do.check_request(m, {}, {"content-type": "text/plain"}, {"name": "a"})
    assert probs[0].kind == "content-type", probs
    m = do.find("POST", "/v2/tags")
    probs, _ = do.check_request(m, {}, json_h, {"name": "t", "resources": {"count": 1}})
    assert [(p.pointer, p.kind) for p in probs] == [("/resources", "read-only")], probs
    m = do.find("GET", "/v2/tags/t")
    body = {"tag": {"name": "t", "resources": {"count": 0, "images": {"count": 0}}}}
    assert do.check_response(m, 200, {"ratelimit-limit": "1"}, body) == []
    assert do.errata_hits == {"spec typo": 1}
    probs = do.check_response(m, 200, {}, {"tag": {"name": 5}})
    assert {(p.where, p.kind) for p in probs} == {("response", "type"),
                                                 ("response-header", "required")}, probs
    m = do.find("DELETE", "/v2/droplets/1")
    assert do.check_response(m, 204, {"ratelimit-limit": "1"}, NO_BODY) == []
    assert do.check_response(m, 204, {"ratelimit-limit": "1"}, {"x": 1})[0].kind == "unexpected-body"
    k8s = OpenApi30(os.path.join(SPECS, "kubernetes", "v1.35", "api__v1_openapi.json"),
                    uri="urn:check:k8s")
    m = k8s.find("POST", "/api/v1/namespaces/default/configmaps")
    probs, _ = k8s.check_request(m, {}, json_h, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "c", "labelz": {}}})
    assert [(p.pointer, p.kind) for p in probs] == [("/metadata/labelz", "unknown")], probs
    ok("OpenAPI 3.0 on the DigitalOcean and Kubernetes specs: matching, coercion, unknown / "
       "read-only fields, oneOf branch, media types, responses, errata")


def check_walker():
    schemas = {"A": {"type": "object", "properties": {"a": {"type": "string"}}}}
    walker = StrictWalker(lambda s: schemas[s["$ref"]],
                          lambda s, v: isinstance(v, dict) and "b" in v if "required" in s else True)
    schema = {"oneOf": [{"$ref": "A"}, {"required": ["b"], "properties": {"b": {"type": "integer"}}}],
              "properties": {"free": {"type": "object"}, "m": {"additionalProperties": {"$ref": "A"}}}}
    probs = walker.problems(schema, {"b": 1, "free": {"anything": 1}, "m": {"k": {"zz": 1}}},
                            "body", "request")
    assert [p.pointer for p in probs] == ["/m/k/zz"], probs
    ok("strict walker: oneOf branches, free-form objects, additionalProperties maps")


def check_faults_and_redact():
    f = Faults()
    f.add({"method": "GET", "path": "^/x$", "status": 503, "count": 2, "after": 1})
    hits = [bool(f.match("GET", "/x")) for _ in range(5)]
    assert hits == [False, True, True, False, False], hits
    assert f.match("POST", "/x") is None and f.snapshot()[0]["hits"] == 2
    r = redact({"user_data": "#cloud-config", "token": "t", "name": "n",
                "key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"})
    assert r["name"] == "n" and "redacted" in r["user_data"] and "redacted" in r["token"] \
        and "redacted" in r["key"], r
    ok("fault rules (method, path, after, count); redaction of secrets and PEM keys")


class ToyApp(SimApp):
    name = "toy"

    def authenticate(self, req):
        if req.headers.get("authorization") != "Bearer t":
            raise ApiError(401, "unauthorized", "no")

    def inventory(self):
        return {"things": 1}


def check_server():
    work = tempfile.mkdtemp(prefix="simkit-check-")
    app = ToyApp(work)
    app.add_route("GET", r"/hello", lambda req: Response(200, {"hi": req.q("who", "?")}))
    app.add_route("POST", r"/echo", lambda req: Response(201, {"got": req.body}))
    app.add_route("GET", r"/boom", lambda req: 1 / 0)
    tls = make_tls(work, name="toy")
    srv = SimServer(app, "127.0.0.1", 0, server_context(tls)).start()
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)

    def call(method, path, body=None, auth=True, chunked=False):
        headers = {"Authorization": "Bearer t"} if auth else {}
        if chunked:
            conn.putrequest(method, path)
            for k, v in dict(headers, **{"Transfer-Encoding": "chunked",
                                         "Content-Type": "application/json"}).items():
                conn.putheader(k, v)
            conn.endheaders()
            data = json.dumps(body).encode()
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        else:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)
    assert call("GET", "/hello?who=me") == (200, {"hi": "me"})
    assert call("GET", "/hello", auth=False)[0] == 401
    assert call("POST", "/echo", {"a": [1]}, chunked=True) == (201, {"got": {"a": [1]}})
    assert call("GET", "/nope")[0] == 404
    st, body = call("GET", "/boom")
    assert st == 500 and app.errors.entries()[-1]["kind"] == "exception", body
    assert call("POST", "/_sim/faults", {"path": "^/hello$", "status": 418, "count": 1})[0] == 201
    assert call("GET", "/hello")[0] == 418 and call("GET", "/hello")[0] == 200
    assert call("POST", "/_sim/mark", {"phase": "p1"}) == (200, {"phase": "p1"})
    call("GET", "/hello")
    st, body = call("GET", "/_sim/requests?phase=p1")
    assert [e["path"] for e in body["requests"]] == ["/hello"], body
    assert call("GET", "/_sim/inventory") == (200, {"things": 1})
    assert call("GET", "/_sim/requests/summary")[1]["p1"]["requests"] == 1
    lines = open(os.path.join(work, "requests.jsonl")).read().splitlines()
    assert len(lines) == 8 and all(json.loads(x)["request_id"] for x in lines), lines
    conn.close()
    srv.stop()
    shutil.rmtree(work, ignore_errors=True)
    ok("TLS server + toy app: keep-alive, chunked body, auth hook, 404, exception → 500 and a "
       "sim error, faults, phase marks, request log, inventory")


def check_gate():
    g = Gate()
    assert g.enter("POST", "/x") is None, "disarmed: nothing counted"
    g.arm({"after": 1, "ignore": "^/token$"})
    assert g.enter("GET", "/x") is None and g.enter("POST", "/token") is None
    assert g.enter("POST", "/a", label="create a") is True
    out = []
    t = threading.Thread(target=lambda: out.append(g.enter("DELETE", "/b")))
    t.start()
    deadline = time.monotonic() + 5
    while g.state()["held"] != 1:
        assert time.monotonic() < deadline, g.state()
        time.sleep(0.01)
    st = g.state()
    assert st["admitted"] == 1 and st["in_flight"] == 1 and st["log"] == ["create a"], st
    g.leave()
    assert g.state()["in_flight"] == 0
    g.disarm()
    t.join(5)
    assert out == [False] and g.state()["dropped"] == 1, (out, g.state())
    assert g.enter("POST", "/c") is None, "disarmed again: nothing held"
    for bad in ({"after": -1}, {"after": "2"}, {"after": 1, "x": 1}, {"after": 1, "ignore": "("}):
        try:
            g.arm(bad)
        except GateError:
            continue
        raise AssertionError(f"gate accepted {bad}")
    ok("crash-point gate: counts mutating requests, holds the (K+1)-th, drops it on disarm")


def check_forwarder():
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(8)
    port = echo.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = echo.accept()
            except OSError:
                return
            c.sendall(c.recv(100))
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    verdict = {"v": "allow"}
    fwd = TcpForwarder(drop_hold=5)
    lport = fwd.open("k", ("127.0.0.2", 0), ("127.0.0.1", port),
                     lambda ip, p: (verdict["v"], "test")).listen[1]

    def roundtrip():
        s = socket.create_connection(("127.0.0.2", lport), timeout=1.0)
        try:
            s.sendall(b"ping")
            return s.recv(100)
        finally:
            s.close()
    assert roundtrip() == b"ping"
    verdict["v"] = "drop"
    t0 = time.monotonic()
    try:
        roundtrip()
        raise AssertionError("dropped connection answered")
    except socket.timeout:
        assert time.monotonic() - t0 >= 0.9
    verdict["v"] = "refuse"
    try:
        got = roundtrip()
        assert got == b"", got
    except ConnectionResetError:
        pass
    snap = fwd.snapshot()[0]
    assert (snap["allowed"], snap["dropped"], snap["refused"]) == (1, 1, 1), snap
    fwd.close_all()
    echo.close()
    ok("TCP forwarder: allow (echo through), drop (held unanswered), refuse (reset)")


def main():
    t0 = time.monotonic()
    print("simkit self-check", flush=True)
    check_specs()
    check_walker()
    check_faults_and_redact()
    check_server()
    check_gate()
    check_forwarder()
    print(f"PASS in {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
