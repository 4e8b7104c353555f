#!/usr/bin/env python3
"""Quick self-check of vmboot (about 15 s, no root, 127.x addresses only).

    $VENV/bin/python tests/vmboot/selfcheck.py [--samples DIR]

It renders a scheduler and a worker user-data from the real templates (templates/
cloud-init.yaml.j2, node-run.sh.j2, scheduler_ttl.py, rendered here with jinja2 the way
providers/core/src/bootstrap.rs renders them with minijinja), boots them with a VmRuntime on
two random 127.x.y.1/2 addresses (the scheduler's user-data as plain text, the worker's as
base64), and checks: a Dask client computes on them; each console shows the Dask lines and
equals dask.log; stop() kills the worker with no power-off; the scheduler exiting powers it
off ("exited") after the run script's last echo; the TTL timer powers a node off ("ttl", with
a one-second minute); refusals (the old runcmd, a non-local IP) raise Refusal and land in
agent-errors.jsonl; shutdown() leaves nothing alive.

`--samples DIR` also boots the user-data the Rust renderer wrote there (`CLUSTERCTL_WRITE_SAMPLES=
DIR cargo test -p clusterctl-core write_samples`): the scheduler's expiry lies in the past, so
its TTL preload closes it at once and the node must power itself off.

The interpreter running this must have distributed, PyYAML and jinja2 (the test venv has them);
it is also the nodes' Python.  Exit status 0 when every check passed.
"""

import argparse
import base64
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from vmboot import Refusal, VmRuntime  # noqa: E402

ROOT = "/etc/clusterctl"
SCHEDULER_ROUTES = ("['distributed.http.scheduler.prometheus', 'distributed.http.scheduler.info',"
                    " 'distributed.http.scheduler.json', 'distributed.http.health',"
                    " 'distributed.http.proxy', 'distributed.http.statics',"
                    " 'distributed.http.scheduler.api']")


def shell_quote(value):
    """bootstrap.rs's `shell_quote` filter."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,")
    if value and all(c in safe for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def render(role, argv, env, files, ttl_minutes, version):
    """User-data the way render_cloud_init renders it: run.sh and dask.env appended to the
    files, every file base64, the templates' own text."""
    import jinja2
    jenv = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
                              autoescape=False)
    jenv.filters["shell_quote"] = shell_quote

    def template(name):
        with open(os.path.join(REPO, "templates", name), encoding="utf-8") as f:
            return jenv.from_string(f.read())

    fetch = any(p.endswith("/secrets.json") for p, _, _ in files)
    script = template("node-run.sh.j2").render(
        role=role, cluster="selfcheck", ttl_minutes=ttl_minutes, install_docker=False,
        gpu=False, root=ROOT, image=f"ghcr.io/dask/dask:{version}-py3.12", argv=argv,
        fetch=fetch, fetch_script=f"{ROOT}/fetch_secrets.py",
        fetch_config=f"{ROOT}/secrets.json")
    env_text = "".join(f"{k}={v}\n" for k, v in sorted(env.items()))
    all_files = list(files) + [(f"{ROOT}/dask.env", env_text, "0600"),
                               (f"{ROOT}/run.sh", script, "0700")]
    rendered = [{"path": p, "mode": m, "b64": base64.b64encode(c.encode()).decode()}
                for p, c, m in all_files]
    return template("cloud-init.yaml.j2").render(role=role, cluster="selfcheck",
                                                  files=rendered, root=ROOT)


def scheduler_user_data(version, expires, ttl_minutes=60):
    with open(os.path.join(REPO, "templates", "scheduler_ttl.py"), encoding="utf-8") as f:
        preload = f.read()
    argv = ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786",
            "--dashboard-address", "0.0.0.0:8787", "--preload", f"{ROOT}/clusterctl_ttl.py",
            "--idle-timeout", "600s"]
    env = {"CLUSTERCTL_CLUSTER": "selfcheck", "CLUSTERCTL_EXPIRES": str(expires),
           "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": SCHEDULER_ROUTES}
    return render("scheduler", argv, env, [(f"{ROOT}/clusterctl_ttl.py", preload, "0644")],
                  ttl_minutes, version)


def fetching_user_data(version, expires, endpoint, store="aws-ssm",
                       name="/clusterctl-ec2/selfcheck/probe-key.pem"):
    """A scheduler whose key file comes from a secret store at boot."""
    with open(os.path.join(REPO, "templates", "fetch_secrets.py"), encoding="utf-8") as f:
        fetcher = f.read()
    config = {"store": store, "region": "eu-west-1", "endpoint": endpoint,
              "deadline_seconds": 20,
              "files": {"probe-key.pem": {"name": name, "mode": "0600"}}}
    argv = ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786",
            "--dashboard-address", "0.0.0.0:8787"]
    env = {"CLUSTERCTL_CLUSTER": "selfcheck", "CLUSTERCTL_EXPIRES": str(expires)}
    return render("scheduler", argv, env, [
        (f"{ROOT}/fetch_secrets.py", fetcher, "0644"),
        (f"{ROOT}/secrets.json", json.dumps(config), "0644")], 60, version)


class FakeAws:
    """IMDSv2 (a token, an instance role, its credentials) and SSM GetParameters on loopback,
    recording what the key fetch sent."""

    def __init__(self, ip):
        import http.server
        fake = self
        self.requests = []
        self.role_after = time.monotonic() + 1.5  # the role shows up late, as after launch

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status, body, ctype="text/plain"):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                fake.requests.append(("PUT", self.path, dict(self.headers)))
                ok = self.path == "/latest/api/token" and \
                    self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self.answer(200 if ok else 400, "imds-token" if ok else "")

            def do_GET(self):
                fake.requests.append(("GET", self.path, dict(self.headers)))
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
                    return self.answer(401, "")
                base = "/latest/meta-data/iam/security-credentials/"
                if time.monotonic() < fake.role_after:
                    return self.answer(404, "")
                if self.path == base:
                    return self.answer(200, "selfcheck-node")
                if self.path == base + "selfcheck-node":
                    return self.answer(200, json.dumps({
                        "Code": "Success", "AccessKeyId": "ASIASELFCHECK",
                        "SecretAccessKey": "s3cret", "Token": "session-token"}))
                self.answer(404, "")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("POST", self.path, dict(self.headers), body))
                if self.headers.get("X-Amz-Target") != "AmazonSSM.GetParameters" or \
                        not body.get("WithDecryption"):
                    return self.answer(400, "{}")
                params = [{"Name": n, "Type": "SecureString", "Value": "KEY FOR " + n}
                          for n in body["Names"]]
                self.answer(200, json.dumps({"Parameters": params, "InvalidParameters": []}),
                            "application/x-amz-json-1.1")

        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.url = f"http://{ip}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class FakeGcp:
    """A GCE metadata server (the attached service account's token, only with the
    `Metadata-Flavor: Google` header) and Secret Manager's versions/1:access on loopback."""

    def __init__(self, ip):
        import http.server
        fake = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append((self.path, dict(self.headers)))
                if self.path == "/computeMetadata/v1/instance/service-accounts/default/token":
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self.answer(403, {})
                    return self.answer(200, {"access_token": "sa-token", "expires_in": 3599,
                                             "token_type": "Bearer"})
                want = "/v1/projects/p/secrets/clusterctl-selfcheck-probe-key_pem/versions/1:access"
                if self.path == want and self.headers.get("Authorization") == "Bearer sa-token":
                    data = base64.b64encode(b"GCP KEY").decode()
                    return self.answer(200, {"name": want[4:-7], "payload": {"data": data}})
                self.answer(404, {"error": {"status": "NOT_FOUND", "message": self.path}})

        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.host = f"{ip}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def worker_user_data(version, scheduler, expires, ttl_minutes=60):
    argv = ["dask", "worker", scheduler, "--host", "0.0.0.0", "--no-dashboard",
            "--dashboard-address", "0.0.0.0:0", "--death-timeout", "60s", "--no-nanny",
            "--nthreads", "1"]
    env = {"CLUSTERCTL_CLUSTER": "selfcheck", "CLUSTERCTL_EXPIRES": str(expires)}
    return render("worker", argv, env, [], ttl_minutes, version)


class Checks:
    def __init__(self):
        self.failed = []

    def ok(self, cond, what, detail=""):
        print(f"  {'ok  ' if cond else 'FAIL'} {what}" + (f": {detail}" if detail and not cond
                                                           else ""), flush=True)
        if not cond:
            self.failed.append(what)
        return cond


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.1)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def events_of(workdir, name="agent-events.jsonl"):
    text = read(os.path.join(workdir, name))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", help="dir with the Rust-rendered *.user-data")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    c = Checks()
    workdir = tempfile.mkdtemp(prefix="vmboot-selfcheck-")
    net = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"
    sched_ip, worker_ip = f"{net}.1", f"{net}.2"
    powered = []
    power_event = threading.Event()

    def on_power_off(node, reason):
        powered.append((node, reason))
        power_event.set()
        return {"action": "selfcheck"}

    print(f"vmboot selfcheck in {workdir} on {net}.x", flush=True)
    rt = VmRuntime(python=sys.executable, workdir=workdir)
    version = rt.distributed_version
    try:
        expires = int(time.time()) + 600
        print("boot a scheduler (plain user-data) and a worker (base64)")
        rt.boot("sched-1", scheduler_user_data(version, expires), sched_ip, on_power_off)
        worker_ud = worker_user_data(version, f"tcp://{sched_ip}:8786", expires)
        rt.boot("worker-1", base64.b64encode(worker_ud.encode()), worker_ip, on_power_off)
        c.ok(rt.nodes() == ["sched-1", "worker-1"], "nodes() lists both", rt.nodes())
        c.ok(wait_for(lambda: "Scheduler at:" in rt.console("sched-1"), 30),
             "scheduler console shows 'Scheduler at:'", rt.console("sched-1"))
        c.ok(wait_for(lambda: "Registered to:" in rt.console("worker-1"), 30),
             "worker console shows 'Registered to:'", rt.console("worker-1"))
        c.ok(rt.console("sched-1") == read(os.path.join(workdir, "sched-1", "dask.log")),
             "console == dask.log (tee to both)")
        boot = json.load(open(os.path.join(workdir, "sched-1", "boot.json")))
        c.ok(f"{sched_ip}:8787" in boot["argv"] and sched_ip in boot["argv"],
             "0.0.0.0 became the node IP", boot["argv"])

        from distributed import Client
        with Client(f"tcp://{sched_ip}:8786", timeout=20) as client:
            total = client.submit(sum, range(10)).result(timeout=20)
            c.ok(total == 45, "a client computes on the cluster", total)

            print("stop() the worker")
            rt.stop("worker-1", wait=True)
            c.ok(not rt.alive("worker-1"), "the stopped worker is gone")
            rt.stop("worker-1")  # idempotent
            print("the scheduler exits: the run script powers the node off")
            client.shutdown()
        c.ok(power_event.wait(20), "on_power_off called")
        c.ok(powered == [("sched-1", "exited")], "power-off reason 'exited', the worker"
             " (stopped) never powers off", powered)
        c.ok(wait_for(lambda: not rt.alive("sched-1"), 10), "the scheduler's group is gone")
        console = rt.console("sched-1")
        c.ok(console.endswith("clusterctl: dask scheduler exited with status 0; powering off\n"),
             "the console ends with the run script's last echo", console[-300:])

        print("the TTL timer (a one-second minute here)")
        rt2 = VmRuntime(python=sys.executable, workdir=os.path.join(workdir, "ttl"),
                        ttl_minute=1.0)
        ttl_powered = []
        rt2.boot("sched-ttl", scheduler_user_data(version, expires, ttl_minutes=1),
                 f"{net}.3", lambda n, r: ttl_powered.append((n, r)))
        c.ok(wait_for(lambda: ttl_powered, 10) == [("sched-ttl", "ttl")],
             "power-off reason 'ttl'", ttl_powered)
        c.ok(wait_for(lambda: not rt2.alive("sched-ttl"), 10), "the TTL node's group is gone")
        rt2.shutdown()

        print("a key fetched from a secret store before Dask starts (IMDSv2 + SSM)")
        fake = FakeAws(f"{net}.6")
        rt.boot("sched-fetch", fetching_user_data(version, expires, fake.url), f"{net}.7",
                on_power_off, metadata_env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": fake.url})
        key = os.path.join(workdir, "sched-fetch", "root", ROOT.lstrip("/"), "probe-key.pem")
        c.ok(wait_for(lambda: "Scheduler at:" in rt.console("sched-fetch"), 30),
             "the fetching scheduler starts", rt.console("sched-fetch"))
        c.ok(read(key) == "KEY FOR /clusterctl-ec2/selfcheck/probe-key.pem"
             and os.stat(key).st_mode & 0o777 == 0o600, "the key was written, mode 0600")
        posts = [r for r in fake.requests if r[0] == "POST"]
        auth = posts[-1][2].get("Authorization", "") if posts else ""
        c.ok(auth.startswith("AWS4-HMAC-SHA256 Credential=ASIASELFCHECK/")
             and "/eu-west-1/ssm/aws4_request" in auth
             and posts[-1][2].get("X-Amz-Security-Token") == "session-token",
             "GetParameters was signed (SigV4) with the instance role's credentials", posts)
        console = rt.console("sched-fetch")
        c.ok("waiting for the node's keys: no instance role yet" in console
             and "fetched 1 key file(s) from aws-ssm" in console and "KEY FOR" not in console,
             "the console says it waited for the role, never shows the key", console[:600])
        rt.stop("sched-fetch", wait=True)

        print("the same from Secret Manager with the instance's service account (GCE)")
        gcp = FakeGcp(f"{net}.8")
        rt.boot("sched-gcp", fetching_user_data(
            version, expires, f"http://{gcp.host}", store="gcp-secret-manager",
            name="projects/p/secrets/clusterctl-selfcheck-probe-key.pem"), f"{net}.9",
            on_power_off, metadata_env={"GCE_METADATA_HOST": gcp.host})
        key = os.path.join(workdir, "sched-gcp", "root", ROOT.lstrip("/"), "probe-key.pem")
        c.ok(wait_for(lambda: read(key) == "GCP KEY", 30)
             and os.stat(key).st_mode & 0o777 == 0o600,
             "the key was read with the service account's token and written, mode 0600",
             gcp.requests)
        c.ok(any(h.get("Metadata-Flavor") == "Google" for _, h in gcp.requests),
             "the token came from the metadata server with its header")
        rt.stop("sched-gcp", wait=True)

        print("refusals")
        import yaml
        doc = yaml.safe_load(scheduler_user_data(version, expires))
        doc["runcmd"] = [["sh", "-c", f"nohup {ROOT}/run.sh >/var/log/clusterctl-dask.log 2>&1 &"]]
        old = "#cloud-config\n" + yaml.safe_dump(doc)  # the runcmd before the console fix
        for node, ud, ip, expect in (("old-runcmd", old, f"{net}.4", "runcmd"),
                                     ("far-away", scheduler_user_data(version, expires),
                                      "192.0.2.10", "private IP")):
            try:
                rt.boot(node, ud, ip, on_power_off)
                c.ok(False, f"{node} refused")
            except Refusal as e:
                c.ok(expect in str(e), f"{node} refused: {str(e)[:90]}...", str(e))
        errors = events_of(workdir, "agent-errors.jsonl")
        c.ok([(e["instance"], e["event"]) for e in errors]
             == [("old-runcmd", "refused"), ("far-away", "refused")],
             "agent-errors.jsonl holds exactly the two refusals", errors)

        if args.samples:
            print(f"the Rust-rendered samples in {args.samples}")
            sample = {r: read(os.path.join(args.samples, f"{r}.user-data"))
                      for r in ("scheduler", "worker")}
            sample_powered = []
            try:
                rt.boot("sample-sched", sample["scheduler"], "127.0.1.4",
                        lambda n, r: sample_powered.append((n, r)))
                rt.boot("sample-worker", sample["worker"], f"{net}.5", on_power_off)
            except Refusal as e:
                c.ok(False, "the samples boot", str(e))
            else:
                c.ok(wait_for(lambda: sample_powered, 30) == [("sample-sched", "exited")],
                     "the expired sample scheduler closes and powers off", sample_powered)
                c.ok("cluster TTL reached" in rt.console("sample-sched"),
                     "its console shows the TTL preload closing it", rt.console("sample-sched"))
                rt.stop("sample-worker", wait=True)
    finally:
        rt.shutdown()
    c.ok(not any(rt.alive(n) for n in rt.nodes()), "shutdown() leaves nothing alive")
    kinds = [e["event"] for e in events_of(workdir) if e["instance"] == "sched-1"]
    c.ok(kinds[:1] == ["booted"] and "exited" in kinds and "powered-off" in kinds,
         "events of the scheduler", kinds)
    if c.failed:
        print(f"vmboot selfcheck: {len(c.failed)} FAILED (work directory kept: {workdir})")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print("vmboot selfcheck: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
