"""By-hand end-to-end check of the ECS agent (not run by CI; needs root for `ip netns`).

    sudo ~/.cache/clusterctl-test/venv-<V>/bin/python tests/aws/ecsagent/selfcheck.py [--keep DIR]

In a throwaway network namespace it starts moto, runs `setup`, creates what clusterctl would
(a tagged cluster, an execution role, a log group, SSM SecureString keys, a security group,
TLS task definitions in the entry-script form), runs 1 scheduler and 2 worker tasks, boots
them with `boot`, and checks: a TLS Dask client computes on 2 workers; the keys are neither
in Dask's environment nor in boot.json; logs reach CloudWatch; StopTask kills the workers;
the scheduler's exit makes the agent StopTask it; an expired task stops without Dask; a bad
command is refused; `inspect` reports it all; SIGTERM ends the agent with 0.  It also checks
that `boot` refuses to start outside a sandbox namespace.  Everything it starts is stopped by
PID and the namespace is deleted.
"""

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(os.path.dirname(HERE), "ecs_agent.py")
sys.path.insert(0, os.path.dirname(HERE))
PY = sys.executable
NAME = "selfcheck"
ROOT = "/tmp/clusterctl"
ACCOUNT = "123456789012"
REGION = "us-east-1"


def step(msg):
    print(f"selfcheck: {msg}", flush=True)


def wait_for(what, fn, timeout=120, interval=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def tls_bundle():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(cn, key, issuer_cn, issuer_key, ca):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True))
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    out = {"ca": cert("selfcheck CA", ca_key, "selfcheck CA", ca_key, True)}
    for role in ("scheduler", "worker", "client"):
        k = ec.generate_private_key(ec.SECP256R1())
        out[role] = (cert(f"dask-{role}", k, "selfcheck CA", ca_key, False), key_pem(k))
    return out


def entry_command(files, argv):
    """The container command as providers/core/src/container.rs renders it."""
    from ecsagent.entry import file_variable
    lines = ["set -eu", "umask 077", f"mkdir -p {ROOT}"]
    for path, mode in files:
        lines += [f"printf '%s' \"${file_variable(path)}\" >{path}", f"chmod {mode} {path}"]
    if files:
        lines.append("unset " + " ".join(file_variable(p) for p, _ in files))
    lines += ["left=$((CLUSTERCTL_EXPIRES - $(date +%s)))", '[ "$left" -gt 0 ] || exit 0',
              'exec timeout -k 30 "$((left + 60))" "$@"']
    return ["sh", "-c", "\n".join(lines), "clusterctl-node"] + argv


def inner(workdir):
    import boto3
    from distributed import Client
    from distributed.security import Security
    from ecsagent.entry import file_variable

    procs = []
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        moto = subprocess.Popen([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
                                stdout=open(os.path.join(workdir, "moto.log"), "wb"),
                                stderr=subprocess.STDOUT)
        procs.append(moto)

        def up():
            try:
                return urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).status == 200
            except OSError:
                return False
        wait_for("moto", up, 30, 0.1)
        agent_cmd = [PY, AGENT]
        common = ["--endpoint", endpoint, "--region", REGION]
        setup = json.loads(subprocess.check_output(agent_cmd + ["setup"] + common))
        step(f"setup: {setup}")

        kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        ec2, ecs, iam, ssm, logs = (boto3.client(s, **kw)
                                    for s in ("ec2", "ecs", "iam", "ssm", "logs"))
        tags = [{"key": "clusterctl-managed", "value": "true"},
                {"key": "clusterctl-cluster", "value": NAME}]
        cap_tags = [{"Key": t["key"], "Value": t["value"]} for t in tags]
        cluster = ecs.create_cluster(clusterName=f"clusterctl-{NAME}", tags=tags,
                                     capacityProviders=["FARGATE"])["cluster"]["clusterArn"]
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}
        exec_role = iam.create_role(RoleName=f"clusterctl-{NAME}-execution", Tags=cap_tags,
                                    AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.attach_role_policy(RoleName=f"clusterctl-{NAME}-execution", PolicyArn=(
            "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"))
        iam.put_role_policy(RoleName=f"clusterctl-{NAME}-execution", PolicyName="secrets",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                                "Effect": "Allow", "Action": "ssm:GetParameters",
                                "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
                                            f"/clusterctl/{NAME}/*"}]}))
        group = f"/clusterctl/{NAME}"
        logs.create_log_group(logGroupName=group, tags={"clusterctl-cluster": NAME})
        sg = ec2.create_security_group(
            GroupName=f"clusterctl-{NAME}", Description="selfcheck", VpcId=setup["vpc_id"],
            TagSpecifications=[{"ResourceType": "security-group", "Tags": cap_tags}])["GroupId"]
        tls = tls_bundle()
        import distributed
        image = f"ghcr.io/dask/dask:{distributed.__version__}-py3.12"
        expires = int(time.time()) + 900

        def taskdef(role, argv, files, env, expires=expires, family_suffix=""):
            environment = {"CLUSTERCTL_CLUSTER": NAME, "CLUSTERCTL_EXPIRES": str(expires),
                           "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True", **env}
            secrets = []
            for path, _mode, contents in files:
                var = file_variable(path)
                if "PRIVATE KEY" in contents:
                    pname = f"/clusterctl/{NAME}/{path.rsplit('/', 1)[-1]}"
                    ssm.put_parameter(Name=pname, Value=contents, Type="SecureString",
                                      Overwrite=True)
                    secrets.append({"name": var, "valueFrom":
                                    f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{pname}"})
                else:
                    environment[var] = contents
            return ecs.register_task_definition(
                family=f"clusterctl-{NAME}-{role}{family_suffix}", networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"], cpu="1024", memory="2048",
                runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
                executionRoleArn=exec_role, tags=tags,
                containerDefinitions=[{
                    "name": "dask", "image": image, "essential": True,
                    "memoryReservation": 1536, "stopTimeout": 5,
                    "command": entry_command([(p, m) for p, m, _ in files], argv),
                    "environment": [{"name": k, "value": v} for k, v in environment.items()],
                    "secrets": secrets,
                    "portMappings": [{"containerPort": 8786, "protocol": "tcp"}],
                    "logConfiguration": {"logDriver": "awslogs", "options": {
                        "awslogs-group": group, "awslogs-region": REGION,
                        "awslogs-stream-prefix": "dask"}},
                }])["taskDefinition"]["taskDefinitionArn"]

        def role_files(role):
            cert, key = tls[role]
            return [(f"{ROOT}/ca.pem", "0644", tls["ca"]), (f"{ROOT}/{role}.pem", "0644", cert),
                    (f"{ROOT}/{role}-key.pem", "0600", key)]

        def tls_args(role):
            return ["--tls-ca-file", f"{ROOT}/ca.pem", "--tls-cert", f"{ROOT}/{role}.pem",
                    "--tls-key", f"{ROOT}/{role}-key.pem"]

        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))),
                               "templates", "scheduler_ttl.py")) as f:
            ttl_py = f.read()
        sched_td = taskdef("scheduler", [
            "dask", "scheduler", "--host", "0.0.0.0", "--port", "8786",
            "--dashboard-address", "0.0.0.0:8787", "--preload", f"{ROOT}/clusterctl_ttl.py",
            "--protocol", "tls"] + tls_args("scheduler"),
            [(f"{ROOT}/clusterctl_ttl.py", "0644", ttl_py)] + role_files("scheduler"), {})
        net = {"awsvpcConfiguration": {"subnets": setup["subnet_ids"][:1],
                                       "securityGroups": [sg], "assignPublicIp": "DISABLED"}}

        def run(td, role, count=1):
            resp = ecs.run_task(cluster=cluster, taskDefinition=td, count=count,
                                launchType="FARGATE", networkConfiguration=net,
                                startedBy="clusterctl", tags=tags + [
                                    {"key": "clusterctl-role", "value": role}])
            return resp["tasks"]

        agent_dir = os.path.join(workdir, "agent")
        agent = subprocess.Popen(agent_cmd + ["boot"] + common + [
            "--python", PY, "--workdir", agent_dir, "--poll", "0.3"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "agent.log"), "wb"))
        procs.append(agent)
        ready = json.loads(agent.stdout.readline())
        assert ready["ready"] is True, ready
        step(f"agent ready: {ready}")

        sched = run(sched_td, "scheduler")[0]
        ip = next(d["value"] for a in sched["attachments"] for d in a["details"]
                  if d["name"] == "privateIPv4Address")
        sched_id = sched["taskArn"].rsplit("/", 1)[-1]
        step(f"scheduler task {sched_id} at {ip}")
        worker_td = taskdef("worker", [
            "dask", "worker", f"tls://{ip}:8786", "--host", "0.0.0.0", "--no-dashboard",
            "--dashboard-address", "0.0.0.0:0", "--death-timeout", "60s", "--nthreads", "1",
            "--memory-limit", "1024MiB"] + tls_args("worker"), role_files("worker"), {})
        workers = run(worker_td, "worker", count=2)

        def events():
            try:
                with open(os.path.join(agent_dir, "agent-events.jsonl")) as f:
                    return [json.loads(line) for line in f]
            except FileNotFoundError:
                return []

        def has_event(task_id, kind):
            return [e for e in events() if e["task"] == task_id and e["event"] == kind]

        client_dir = tempfile.mkdtemp(dir=workdir)
        paths = {}
        for n, text in (("ca", tls["ca"]), ("cert", tls["client"][0]), ("key", tls["client"][1])):
            paths[n] = os.path.join(client_dir, n + ".pem")
            with open(paths[n], "w") as f:
                f.write(text)
        sec = Security(tls_ca_file=paths["ca"], tls_client_cert=paths["cert"],
                       tls_client_key=paths["key"], require_encryption=True)
        client = Client(f"tls://{ip}:8786", security=sec, timeout="90s")
        client.wait_for_workers(2, timeout=180)
        total = client.submit(sum, client.map(lambda x: x * x, range(100))).result(timeout=60)
        assert total == sum(x * x for x in range(100)), total
        step(f"Dask computed {total} on {len(client.scheduler_info()['workers'])} workers")

        boot = json.load(open(os.path.join(agent_dir, sched_id, "boot.json")))
        assert not any(n.startswith("CLUSTERCTL_FILE_") for n in boot["env_names"]), boot
        pid = has_event(sched_id, "booted")[0]["detail"]["pid"]
        environ = open(f"/proc/{pid}/environ", "rb").read()
        assert b"PRIVATE KEY" not in environ and b"CLUSTERCTL_FILE_" not in environ
        assert b"AWS_" not in environ, "agent environment leaked into Dask"
        assert "PRIVATE KEY" not in json.dumps(boot)
        key_copy = os.path.join(agent_dir, sched_id, "root", ROOT.lstrip("/"), "scheduler-key.pem")
        assert oct(os.stat(key_copy).st_mode & 0o777) == "0o600"
        assert open(key_copy).read() == tls["scheduler"][1]
        step("keys: only in the rooted files (0600), not in Dask's environment or boot.json")

        stream = f"dask/dask/{sched_id}"
        lines = wait_for("scheduler log lines in CloudWatch", lambda: [
            m for m in json.loads(subprocess.check_output(
                agent_cmd + ["log-lines"] + common + ["--group", group, "--stream", stream]))
            if "Scheduler at" in m])
        step(f"CloudWatch {group}/{stream}: {lines[0].strip()}")

        worker_ids = [w["taskArn"].rsplit("/", 1)[-1] for w in workers]
        worker_pids = [has_event(w, "booted")[0]["detail"]["pid"] for w in worker_ids]
        for w in workers:
            ecs.stop_task(cluster=cluster, task=w["taskArn"], reason="selfcheck scale down")
        wait_for("workers killed", lambda: all(has_event(w, "killed") for w in worker_ids), 60)
        for p in worker_pids:
            assert not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
        step("StopTask on the workers ended their process groups")

        client.shutdown()
        client.close()
        wait_for("scheduler StopTask", lambda: has_event(sched_id, "stopped"), 60)
        t = ecs.describe_tasks(cluster=cluster, tasks=[sched["taskArn"]])["tasks"][0]
        assert t["lastStatus"] == "STOPPED", t
        assert t["stoppedReason"] == "Essential container in task exited", t
        step(f"scheduler exited; task {t['lastStatus']}: {t['stoppedReason']}")

        expired_td = taskdef("scheduler", ["dask", "scheduler", "--host", "0.0.0.0"], [], {},
                             expires=int(time.time()) - 5, family_suffix="-expired")
        expired = run(expired_td, "scheduler")[0]["taskArn"].rsplit("/", 1)[-1]
        wait_for("expired task stopped", lambda: has_event(expired, "stopped"), 30)
        assert has_event(expired, "expired") and not has_event(expired, "booted")
        step("a task past CLUSTERCTL_EXPIRES exits 0 without Dask and is stopped")
        assert not os.path.exists(os.path.join(agent_dir, "agent-errors.jsonl"))

        inspect = json.loads(subprocess.check_output(agent_cmd + ["inspect"] + common + [
            "--cluster", NAME]))
        assert [c["name"] for c in inspect["ecs_clusters"]] == [f"clusterctl-{NAME}"]
        assert {t["last_status"] for t in inspect["tasks"]} == {"STOPPED"}, inspect["tasks"]
        assert len(inspect["tasks"]) == 4 and all(t["security_groups"] == [sg]
                                                  for t in inspect["tasks"])
        assert len(inspect["task_definitions"]) == 3
        assert [p["type"] for p in inspect["ssm_parameters"]] == ["SecureString"] * 2
        assert inspect["roles"][0]["attached_policies"], inspect["roles"]
        streams = {s["name"]: s["events"] for s in inspect["log_groups"][0]["streams"]}
        assert len(streams) == 4, streams  # the expired task's container started, then exited
        assert all(streams[f"dask/dask/{t}"] > 0 for t in [sched_id] + worker_ids), streams
        assert inspect["security_groups"][0]["id"] == sg
        assert "PRIVATE KEY" not in json.dumps(inspect)
        step("inspect: " + ", ".join(f"{k}={len(v)}" for k, v in inspect.items()
                                     if isinstance(v, list)))

        bad_td = taskdef("worker", ["dask", "worker", "tcp://172.31.0.9:8786", "--host",
                                    "0.0.0.0"], [], {}, family_suffix="-bad")
        bad = run(bad_td, "worker")[0]["taskArn"].rsplit("/", 1)[-1]
        wait_for("refusal", lambda: has_event(bad, "refused"), 30)
        with open(os.path.join(agent_dir, "agent-errors.jsonl")) as f:
            errors = [json.loads(line) for line in f]
        assert [e["task"] for e in errors] == [bad], errors
        step(f"refused as expected: {errors[0]['detail']['reason']}")

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        step("agent exited 0 on SIGTERM")
        print("selfcheck: OK", flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def outer():
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    workdir = keep or tempfile.mkdtemp(prefix="ecs-selfcheck-")
    os.makedirs(workdir, exist_ok=True)
    refused = subprocess.run([PY, AGENT, "boot", "--endpoint", "http://127.0.0.1:9",
                              "--python", PY, "--workdir", os.path.join(workdir, "host")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "sandbox" in refused.stderr, refused
    step("boot refuses to run in the host's network namespace")
    ns = f"ecs-selfcheck-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "10.0.0.0/8", "dev", "lo"], check=True)
        rc = subprocess.run(["ip", "netns", "exec", ns, PY, os.path.abspath(__file__),
                             "--inner", workdir]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    step(f"workdir {workdir}; namespace {ns} deleted")
    return rc


if __name__ == "__main__":
    if "--inner" in sys.argv:
        inner(sys.argv[sys.argv.index("--inner") + 1])
    else:
        sys.exit(outer())
