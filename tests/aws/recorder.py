"""The platform side of moto for the conformance suite: a WSGI middleware in moto's own process
(tests/aws/moto_server.py --record DIR).

Owns `wrap_run_simple(run_simple, workdir)` and the middleware it installs:
- DIR/requests.jsonl: one line per API request: time, method, path, service (from the SigV4
  credential scope), action (X-Amz-Target, or the Action of the query or form body), status,
  mutating (anything but Describe*/List*/Get*/Lookup*/DryRun calls), clusterctl (whether the
  Rust SDK sent it, rather than a test agent: the ECS agent ships container logs itself).
- the crash-point gate (tests/simkit/gate.py) on those mutating requests: `GET|POST|DELETE
  /_sim/gate`.
- `GET /_sim/requests`: {"requests": [...]} (the log above).
- faults (`POST /_sim/faults {"kind": "throttle"|"server", "rate": P, "seed": N}`, `DELETE`
  stops, `GET` counts them): that share of clusterctl's requests (the Rust SDK's user agent;
  not the test agents' nor the nodes') is answered, unprocessed, with AWS's own throttling error
  (EC2: 503 RequestLimitExceeded; IAM/STS: 400 Throttling; JSON APIs: 400 ThrottlingException)
  or server error (500 InternalError / ServiceFailure / InternalFailure) in the protocol's own
  format. Faulted requests are logged with `"fault": true` and never reach the gate.
- shortages (`POST /_sim/shortage {"kind": "capacity"|"quota"}`, `DELETE` lifts): every
  launch clusterctl asks for is refused as AWS refuses it when there is no capacity, or the
  account's limit is reached: EC2 RunInstances with 500 InsufficientInstanceCapacity or 400
  VcpuLimitExceeded (query XML); ECS RunTask answered 200 with no task and a failure whose
  reason is Fargate's ("Capacity is unavailable at this time. ..." / "You've reached the limit
  on the number of vCPUs you can run concurrently"). Logged with `"shortage": true`.
- `GET /_sim/inventory`: what moto holds that clusterctl could have made, tagged or not:
  live instances, security groups but the default ones, key pairs, volumes, addresses, network
  interfaces (but those of stopped tasks, which Fargate deletes itself), launch templates, IAM roles, instance profiles and local policies, SSM
  parameters, ECS clusters, active task definitions, tasks not stopped, services, log groups.
  Read with boto3 through this same server; those requests carry the user agent
  `conformance-inventory` and are neither logged nor gated.
"""

import importlib.util
import io
import json
import os
import random
import threading
import time
import urllib.parse
import uuid

OBSERVER = "conformance-inventory"
READ_PREFIXES = ("Describe", "List", "Get", "Lookup", "BatchGet", "Search")


def _load_gate():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "simkit", "gate.py")
    spec = importlib.util.spec_from_file_location("simkit_gate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Gate()


def _classify(environ, body):
    """(service, action, mutating) of one AWS request."""
    service = None
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            service = scope[3]
    action, params = None, {}
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.rsplit(".", 1)[-1]
    else:
        params = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        ctype = environ.get("CONTENT_TYPE", "")
        if "x-www-form-urlencoded" in ctype and body:
            params.update(urllib.parse.parse_qs(body.decode("utf-8", "replace")))
        action = (params.get("Action") or [None])[0]
    dry = (params.get("DryRun") or ["false"])[0].lower() == "true"
    if action is None:
        mutating = environ.get("REQUEST_METHOD", "GET") in ("POST", "PUT", "PATCH", "DELETE")
    else:
        mutating = not action.startswith(READ_PREFIXES) and not dry
    return service, action, mutating


class Faults:
    """The share of requests answered with an injected error, and how many were."""

    def __init__(self):
        self._lock = threading.Lock()
        self.kind, self.rate, self.fired = None, 0.0, 0
        self._rng = random.Random(1)

    def set(self, spec):
        kind, rate = spec.get("kind"), spec.get("rate")
        if kind not in ("throttle", "server"):
            raise ValueError('kind must be "throttle" or "server"')
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError("rate must be a number in (0, 1]")
        with self._lock:
            self.kind, self.rate, self.fired = kind, float(rate), 0
            self._rng = random.Random(spec.get("seed", 1))
        return self.state()

    def clear(self):
        with self._lock:
            self.kind, self.rate = None, 0.0
        return self.state()

    def state(self):
        with self._lock:
            return {"kind": self.kind, "rate": self.rate, "fired": self.fired}

    def pick(self, environ):
        """The kind of fault to answer this request with, or None."""
        if not _from_clusterctl(environ):
            return None
        with self._lock:
            if self.kind is None or self._rng.random() >= self.rate:
                return None
            self.fired += 1
            return self.kind


def _from_clusterctl(environ):
    """Whether the Rust SDK (clusterctl) sent the request."""
    agent = environ.get("HTTP_USER_AGENT", "") + environ.get("HTTP_X_AMZ_USER_AGENT", "")
    return "lang/rust" in agent


def _fault_answer(kind, service, json_protocol):
    """(status line, headers, body) of AWS's own error for `kind` in the service's protocol."""
    rid = str(uuid.uuid4())
    if json_protocol:
        code, status = (("ThrottlingException", "400 Bad Request") if kind == "throttle"
                        else ("InternalFailure", "500 Internal Server Error"))
        body = json.dumps({"__type": code, "message": "Rate exceeded" if kind == "throttle"
                           else "An internal error occurred (injected)"}).encode()
        return status, [("Content-Type", "application/x-amz-json-1.1"),
                        ("x-amzn-RequestId", rid), ("x-amzn-ErrorType", code)], body
    if service == "ec2":
        code, status, msg = (("RequestLimitExceeded", "503 Service Unavailable",
                              "Request limit exceeded.") if kind == "throttle"
                             else ("InternalError", "500 Internal Server Error",
                                   "An internal error has occurred"))
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}'
                f'</Code><Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID>'
                f'</Response>').encode()
        return status, [("Content-Type", "text/xml;charset=UTF-8")], body
    # awsQuery (IAM, STS).
    kind_of, code, status, msg = (("Sender", "Throttling", "400 Bad Request", "Rate exceeded")
                                  if kind == "throttle"
                                  else ("Receiver", "ServiceFailure" if service == "iam"
                                        else "InternalFailure", "500 Internal Server Error",
                                        "An internal error occurred (injected)"))
    ns = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/",
          "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}.get(service, "")
    body = (f'<ErrorResponse xmlns="{ns}"><Error><Type>{kind_of}</Type><Code>{code}</Code>'
            f'<Message>{msg}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>'
            ).encode()
    return status, [("Content-Type", "text/xml")], body


SHORTAGE_ACTIONS = ("RunInstances", "RunTask")
EC2_SHORTAGE = {
    "capacity": ("InsufficientInstanceCapacity", "500 Internal Server Error",
                 "We currently do not have sufficient capacity in the Availability Zone you "
                 "requested. Our system will be working on provisioning additional capacity. You "
                 "can currently get capacity by not specifying an Availability Zone in your "
                 "request or choosing a different Availability Zone."),
    "quota": ("VcpuLimitExceeded", "400 Bad Request",
              "You have requested more vCPU capacity than your current vCPU limit of 0 allows "
              "for the instance bucket that the specified instance type belongs to. Please visit "
              "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this "
              "limit."),
}
FARGATE_SHORTAGE = {
    "capacity": "Capacity is unavailable at this time. Please try again later or in a "
                "different availability zone",
    "quota": "You've reached the limit on the number of vCPUs you can run concurrently",
}


def _shortage_answer(kind, action, count):
    """(status line, headers, body) of AWS's refusal of a launch for want of capacity or quota."""
    rid = str(uuid.uuid4())
    if action == "RunTask":
        failures = [{"reason": FARGATE_SHORTAGE[kind]} for _ in range(max(count, 1))]
        body = json.dumps({"tasks": [], "failures": failures}).encode()
        return "200 OK", [("Content-Type", "application/x-amz-json-1.1"),
                          ("x-amzn-RequestId", rid)], body
    code, status, msg = EC2_SHORTAGE[kind]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}'
            f'</Code><Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID>'
            f'</Response>').encode()
    return status, [("Content-Type", "text/xml;charset=UTF-8")], body


class Recorder:
    def __init__(self, app, workdir, port):
        self.app, self.workdir, self.port = app, workdir, port
        self.gate = _load_gate()
        self.faults = Faults()
        self.shortage = None
        self._lock = threading.Lock()
        self._log = os.path.join(workdir, "requests.jsonl")
        os.makedirs(workdir, exist_ok=True)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sim/"):
            return self._control(environ, start_response, path)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if OBSERVER in environ.get("HTTP_USER_AGENT", ""):
            return self.app(environ, start_response)
        service, action, mutating = _classify(environ, body)
        method = environ.get("REQUEST_METHOD", "GET")
        label = f"{service}:{action}" if action else f"{method} {path}"
        t0 = time.time()
        shortage = self.shortage
        if shortage and action in SHORTAGE_ACTIONS and _from_clusterctl(environ):
            count = 1
            if action == "RunTask":
                try:
                    count = int(json.loads(body or b"{}").get("count", 1))
                except ValueError:
                    count = 1
            answer = _shortage_answer(shortage, action, count)
            return self._answer_unprocessed(start_response, answer, "shortage", {
                "time": round(t0, 3), "method": method, "path": path, "service": service,
                "action": action, "mutating": mutating})
        fault = self.faults.pick(environ)
        if fault is not None:
            answer = _fault_answer(fault, service, bool(environ.get("HTTP_X_AMZ_TARGET")))
            return self._answer_unprocessed(start_response, answer, "fault", {
                "time": round(t0, 3), "method": method, "path": path, "service": service,
                "action": action, "mutating": mutating})
        admitted = self.gate.enter(method, path, label=label, mutating=mutating)
        if admitted is False:   # held at a crash point, then dropped: nothing processed
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        status = {}

        def recording_start(st, headers, exc_info=None):
            status["code"] = int(st.split(" ", 1)[0])
            return start_response(st, headers, exc_info)

        try:
            out = list(self.app(environ, recording_start))
        finally:
            if admitted:
                self.gate.leave()
        self._write({"time": round(t0, 3), "method": method, "path": path, "service": service,
                     "action": action, "status": status.get("code"), "mutating": mutating,
                     "clusterctl": _from_clusterctl(environ),
                     "ms": round((time.time() - t0) * 1000, 1)})
        return out

    def _answer_unprocessed(self, start_response, answer, why, entry):
        """Send an answer moto never saw (a shortage or an injected fault) and log it, marked
        with `why`, as a request of clusterctl's."""
        status_line, headers, data = answer
        headers.append(("Content-Length", str(len(data))))
        entry.update({"status": int(status_line.split(" ", 1)[0]), "clusterctl": True,
                      why: True, "ms": 0})
        self._write(entry)
        start_response(status_line, headers)
        return [data]

    def _write(self, entry):
        line = json.dumps(entry)
        with self._lock:
            with open(self._log, "a") as fh:
                fh.write(line + "\n")

    def _control(self, environ, start_response, path):
        method = environ.get("REQUEST_METHOD", "GET")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            if path == "/_sim/gate" and method == "GET":
                out = self.gate.state()
            elif path == "/_sim/gate" and method == "POST":
                out = self.gate.arm(json.loads(raw or b"{}"))
            elif path == "/_sim/gate" and method == "DELETE":
                out = self.gate.disarm()
            elif path == "/_sim/faults" and method == "POST":
                out = self.faults.set(json.loads(raw or b"{}"))
            elif path == "/_sim/faults" and method == "DELETE":
                out = self.faults.clear()
            elif path == "/_sim/faults" and method == "GET":
                out = self.faults.state()
            elif path == "/_sim/shortage" and method == "POST":
                kind = json.loads(raw or b"{}").get("kind")
                if kind not in EC2_SHORTAGE:
                    raise ValueError('kind must be "capacity" or "quota"')
                self.shortage = kind
                out = {"kind": kind}
            elif path == "/_sim/shortage" and method == "DELETE":
                self.shortage = None
                out = {"kind": None}
            elif path == "/_sim/requests" and method == "GET":
                with self._lock:
                    try:
                        with open(self._log) as fh:
                            out = {"requests": [json.loads(x) for x in fh if x.strip()]}
                    except FileNotFoundError:
                        out = {"requests": []}
            elif path == "/_sim/inventory" and method == "GET":
                out = inventory(self.port)
            else:
                return _answer(start_response, 404, {"error": f"no control route {method} {path}"})
        except ValueError as exc:
            return _answer(start_response, 400, {"error": str(exc)})
        return _answer(start_response, 200, out)


def _answer(start_response, status, obj):
    data = json.dumps(obj, default=str).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(data)))])
    return [data]


def _pages(client, op, key, **kw):
    paginator = client.get_paginator(op) if client.can_paginate(op) else None
    if paginator is None:
        return list(getattr(client, op)(**kw).get(key, []))
    out = []
    for page in paginator.paginate(**kw):
        out.extend(page.get(key, []))
    return out


def inventory(port, region="us-east-1"):
    import boto3
    from botocore.config import Config

    def client(name):
        return boto3.client(name, endpoint_url=f"http://127.0.0.1:{port}", region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(user_agent_extra=OBSERVER, retries={"max_attempts": 1}))

    ec2, iam, ssm = client("ec2"), client("iam"), client("ssm")
    ecs, logs = client("ecs"), client("logs")
    held = []
    for r in _pages(ec2, "describe_instances", "Reservations"):
        for i in r["Instances"]:
            if i["State"]["Name"] not in ("terminated", "shutting-down"):
                held.append(f"ec2 instance {i['InstanceId']} {i['State']['Name']}")
    for g in _pages(ec2, "describe_security_groups", "SecurityGroups"):
        if g["GroupName"] != "default":
            held.append(f"ec2 security group {g['GroupId']} {g['GroupName']}")
    for k in ec2.describe_key_pairs().get("KeyPairs", []):
        held.append(f"ec2 key pair {k['KeyName']}")
    for v in _pages(ec2, "describe_volumes", "Volumes"):
        if v["State"] not in ("deleted", "deleting"):
            held.append(f"ec2 volume {v['VolumeId']} {v['State']}")
    for a in ec2.describe_addresses().get("Addresses", []):
        held.append(f"ec2 address {a.get('AllocationId') or a.get('PublicIp')}")
    clusters = _pages(ecs, "list_clusters", "clusterArns")
    tasks, stopped_enis = [], set()
    for c in clusters:
        arns = _pages(ecs, "list_tasks", "taskArns", cluster=c)
        for i in range(0, len(arns), 100):
            for t in ecs.describe_tasks(cluster=c, tasks=arns[i:i + 100])["tasks"]:
                enis = {d["value"] for a in t.get("attachments", []) for d in a.get("details", [])
                        if d.get("name") == "networkInterfaceId"}
                if "STOPPED" in (t.get("lastStatus"), t.get("desiredStatus")):
                    # Fargate deletes a stopped task's interface itself; moto keeps it.
                    stopped_enis |= enis
                else:
                    tasks.append(f"ecs task {t['taskArn']} {t.get('lastStatus')}")
    for n in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces"):
        if n["NetworkInterfaceId"] not in stopped_enis:
            held.append(f"ec2 network interface {n['NetworkInterfaceId']}")
    for t in _pages(ec2, "describe_launch_templates", "LaunchTemplates"):
        held.append(f"ec2 launch template {t['LaunchTemplateName']}")
    for r in _pages(iam, "list_roles", "Roles"):
        if not r.get("Path", "/").startswith("/aws-service-role/"):
            held.append(f"iam role {r['RoleName']}")
    for p in _pages(iam, "list_instance_profiles", "InstanceProfiles"):
        held.append(f"iam instance profile {p['InstanceProfileName']}")
    for p in _pages(iam, "list_policies", "Policies", Scope="Local"):
        held.append(f"iam policy {p['PolicyName']}")
    for name in _ssm_parameter_names(ssm, region):
        held.append(f"ssm parameter {name}")
    if clusters:
        for c in ecs.describe_clusters(clusters=clusters)["clusters"]:
            if c.get("status") != "INACTIVE":
                held.append(f"ecs cluster {c['clusterName']} {c.get('status')}")
    held.extend(tasks)
    for c in clusters:
        for s in _pages(ecs, "list_services", "serviceArns", cluster=c):
            held.append(f"ecs service {s}")
    for td in _pages(ecs, "list_task_definitions", "taskDefinitionArns", status="ACTIVE"):
        held.append(f"ecs task definition {td}")
    for g in _pages(logs, "describe_log_groups", "logGroups"):
        held.append(f"logs group {g['logGroupName']}")
    return {"held": sorted(held)}


def _ssm_parameter_names(ssm, region):
    """Every SSM parameter but AWS's public ones (`/aws/service/...`, which moto loads by the
    thousand once one is read: listing them through the API takes a minute). Read from moto's
    backend in this process; through the API if this moto has no such backend."""
    try:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ssm.models import ssm_backends
        names = list(ssm_backends[DEFAULT_ACCOUNT_ID][region]._parameters)
    except (ImportError, AttributeError, KeyError):
        names = [p["Name"] for p in _pages(ssm, "describe_parameters", "Parameters")]
    return [n for n in names if not n.startswith("/aws/")]


def wrap_run_simple(run_simple, workdir):
    """moto.server.run_simple with the app wrapped in the Recorder."""

    def wrapped(host, port, app, *args, **kwargs):
        return run_simple(host, port, Recorder(app, workdir, port), *args, **kwargs)

    return wrapped
