"""The `docker run` line: its flags, the image, the env file, and the Dask options it passes.

Pure functions, words -> DockerRun / local Dask argv, or Refusal.  Besides the VM runtime, the
ECS agent (tests/aws/ecsagent) and the Kubernetes simulator's kubelet (tests/k8s) translate
their containers' Dask options with `translate_dask_args` and `parse_address`.
"""

import ipaddress
import re

from .common import LOOPBACK, Refusal, networks_text

IMAGE_RE = re.compile(r"^ghcr\.io/dask/dask:(?P<version>[^:@/\s]+)-py3\.12$")
ADDRESS_RE = re.compile(r"^(?:(?:tcp|tls)://)?(?P<host>[0-9.]+):(?P<port>[0-9]+)$")

# Options of `dask scheduler` / `dask worker` (distributed's click definitions): those taking a
# value, and boolean flags.  Anything else is refused.
DASK_OPTIONS = {
    "scheduler": {
        "value": {
            "--host", "--port", "--interface", "--protocol", "--tls-ca-file", "--tls-cert",
            "--tls-key", "--dashboard-address", "--dashboard-prefix", "--use-xheaders",
            "--pid-file", "--scheduler-file", "--preload", "--idle-timeout",
        },
        "flag": {
            "--dashboard", "--no-dashboard", "--jupyter", "--no-jupyter", "--show", "--no-show",
        },
    },
    "worker": {
        "value": {
            "--tls-ca-file", "--tls-cert", "--tls-key", "--worker-port", "--nanny-port",
            "--dashboard-address", "--listen-address", "--contact-address", "--host",
            "--interface", "--protocol", "--nthreads", "--nworkers", "--name",
            "--memory-limit", "--pid-file", "--local-directory", "--resources",
            "--scheduler-file", "--death-timeout", "--dashboard-prefix", "--lifetime",
            "--lifetime-stagger", "--worker-class", "--preload", "--preload-nanny",
            "--scheduler-sni",
        },
        "flag": {
            "--dashboard", "--no-dashboard", "--nanny", "--no-nanny", "--lifetime-restart",
            "--no-lifetime-restart",
        },
    },
}
REPEATABLE_OPTIONS = {"--preload", "--preload-nanny"}
# `--dashboard-address` defaults of the two commands (host part empty = every interface).
DASHBOARD_DEFAULT_PORT = {"scheduler": 8787, "worker": 0}
# Options a test runtime cannot honour without binding a non-loopback address or touching this
# machine's own filesystem outside DIR.
REFUSED_OPTIONS = {
    "--interface": "binds a named network interface, which may be non-loopback here",
    "--listen-address": "sets the bind address outside the 0.0.0.0 -> private-IP mapping",
    "--scheduler-file": "writes/reads a file on the container filesystem a test runtime cannot provide",
    "--pid-file": "writes a file on the container filesystem a test runtime cannot provide",
    "--local-directory": "uses a container directory a test runtime cannot provide",
}



def parse_env_file(path, data):
    """`docker --env-file` semantics: leading whitespace trimmed, blank and '#' lines skipped,
    KEY=VALUE with VALUE literal (a trailing CR dropped, like Go's line scanner)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refusal(f"env file {path} is not UTF-8: {e}")
    if text.startswith("\ufeff"):
        text = text[1:]
    pairs = []
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise Refusal(f"env file {path} line {n}: {key!r} has no '=', so docker would copy it"
                          " from the VM's own environment, which the user-data does not define")
        if not key or re.search(r"\s", key):
            raise Refusal(f"env file {path} line {n}: invalid variable name {key!r}")
        pairs.append((key, value))
    return pairs


class DockerRun:
    def __init__(self):
        self.rm = False
        self.name = None
        self.network = None
        self.gpus = None
        self.env_files = []
        self.volumes = []
        self.image = None
        self.argv = []


def interpret_docker_run(words, files_by_path, written_dirs, writable=False):
    """`writable`: the key fetch's run, whose one volume (`DIR:DIR`) it writes the keys into."""
    run = DockerRun()
    args = words[2:]
    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag, eq, value = args[i].partition("=")
        if flag == "--rm":
            if eq:
                raise Refusal(f"docker run: {args[i]!r} is not interpreted")
            run.rm = True
            i += 1
            continue
        if flag not in ("--name", "--network", "--gpus", "--env-file", "--volume"):
            raise Refusal(f"docker run: flag {args[i]!r} is not interpreted here")
        if eq:
            i += 1
        else:
            if i + 1 >= len(args):
                raise Refusal(f"docker run: {flag} has no value")
            value = args[i + 1]
            i += 2
        if flag == "--name":
            if run.name is not None:
                raise Refusal("docker run: --name given twice")
            run.name = value
        elif flag == "--network":
            if value != "host" or run.network is not None:
                raise Refusal(f"docker run: --network {value!r}: only one '--network host' can"
                              " be emulated")
            run.network = value
        elif flag == "--gpus":
            if value != "all" or run.gpus is not None:
                raise Refusal(f"docker run: --gpus {value!r}: only one '--gpus all' is accepted")
            run.gpus = value
        elif flag == "--env-file":
            if value not in files_by_path:
                raise Refusal(f"docker run: --env-file {value} is not a file the user-data writes")
            run.env_files.append(value)
        else:  # --volume
            parts = value.split(":")
            if writable:
                if len(parts) != 2 or parts[0] != parts[1]:
                    raise Refusal(f"docker run: --volume {value!r}: the key fetch mounts"
                                  " 'DIR:DIR' (writable) only")
            elif len(parts) != 3 or parts[2] != "ro" or parts[0] != parts[1]:
                raise Refusal(f"docker run: --volume {value!r}: only 'DIR:DIR:ro' is emulated")
            if parts[0] not in written_dirs:
                raise Refusal(f"docker run: --volume {value!r}: {parts[0]} is not a directory the"
                              " user-data writes files into, so its contents are unknown")
            if parts[0] in run.volumes:
                raise Refusal(f"docker run: --volume {value!r} given twice")
            run.volumes.append(parts[0])
    if run.network != "host":
        raise Refusal("docker run: without '--network host' the container's ports could not be"
                      " reached on the instance IP; only host networking is emulated")
    if i >= len(args):
        raise Refusal("docker run: no image")
    run.image = args[i]
    run.argv = args[i + 1:]
    return run


def parse_address(value, what, networks=(LOOPBACK,)):
    """A `[tcp://|tls://]IP:PORT` whose IP is in `networks` (default: loopback only)."""
    m = ADDRESS_RE.match(value)
    if not m:
        raise Refusal(f"{what} {value!r} is not [tcp://|tls://]IP:PORT")
    try:
        host = ipaddress.ip_address(m.group("host"))
    except ValueError:
        raise Refusal(f"{what} {value!r}: {m.group('host')!r} is not an IP address")
    if not any(host in net for net in networks):
        scope = "loopback" if tuple(networks) == (LOOPBACK,) else "addresses local to its sandbox"
        raise Refusal(f"{what} {value!r} is not in {networks_text(networks)}; the test runtime only"
                      f" dials {scope}")
    return value


def translate_dask_args(role, args, private_ip, root_path, networks=(LOOPBACK,), dial=None):
    """Container argv after `dask ROLE` -> (local argv after `-m dask ROLE`, notes).

    `networks` are where a dialled address (the worker's scheduler, `--contact-address`) may
    be: loopback, or loopback and 10.0.0.0/8 inside the sandbox namespace (see `sandbox`).
    `dial(value, what) -> value`, when given, replaces that check for dialled addresses and
    returns what to pass instead (the k8s simulator resolves cluster DNS names with it); by
    default only IP literals in `networks` pass, unchanged."""
    spec = DASK_OPTIONS[role]
    out, positionals, seen, notes = [], [], {}, []
    if dial is None:
        def dial(value, what):
            return parse_address(value, what, networks)
    positional_at = []

    def map_bind_host(host, what):
        if host in ("0.0.0.0", ""):
            return private_ip
        if host == private_ip:
            return host
        raise Refusal(f"dask {role} {what} {host!r}: only 0.0.0.0 or empty (all interfaces of"
                      f" the VM, i.e. its private IP {private_ip}) or that IP can be emulated")

    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name in spec["flag"]:
                if eq:
                    raise Refusal(f"dask {role}: flag {arg!r} takes no value")
                out.append(arg)
                i += 1
                continue
            if name not in spec["value"]:
                raise Refusal(f"dask {role}: option {arg!r} is not a known option")
            if name in REFUSED_OPTIONS:
                raise Refusal(f"dask {role}: {name} {REFUSED_OPTIONS[name]}")
            if not eq:
                if i + 1 >= len(args):
                    raise Refusal(f"dask {role}: {name} has no value")
                value = args[i + 1]
                i += 2
            else:
                i += 1
            if name in seen and name not in REPEATABLE_OPTIONS:
                raise Refusal(f"dask {role}: {name} given twice")
            seen.setdefault(name, []).append(value)
            if name == "--host":
                value = map_bind_host(value, "--host")
            elif name == "--dashboard-address":
                host, colon, port = value.rpartition(":")
                if not colon or not port.isdigit():
                    raise Refusal(f"dask {role}: --dashboard-address {value!r} is not HOST:PORT")
                value = f"{map_bind_host(host, '--dashboard-address host')}:{port}"
            elif name == "--contact-address":
                value = dial(value, f"dask {role} --contact-address")
            elif name == "--protocol" and value not in ("tcp", "tls"):
                raise Refusal(f"dask {role}: --protocol {value!r} is not tcp or tls")
            value = root_path(value)
            out.extend([name, value] if not eq else [f"{name}={value}"])
        else:
            positionals.append(arg)
            positional_at.append(len(out))
            out.append(root_path(arg))
            i += 1

    if "--host" not in seen:
        raise Refusal(f"dask {role} without --host binds every interface of this machine;"
                      " the test runtime needs '--host 0.0.0.0' to map it to the instance IP")
    if "--dashboard-address" not in seen:
        # Scheduler and worker start their HTTP server (health, metrics; the dashboard is only
        # an extra app on it) even with --no-dashboard, on --dashboard-address, whose CLI
        # default has an empty host: every interface of the VM, i.e. its private IP here.
        port = DASHBOARD_DEFAULT_PORT[role]
        out.extend(["--dashboard-address", f"{private_ip}:{port}"])
        notes.append(f"no --dashboard-address: dask {role}'s default ':{port}' (every interface)"
                     f" made explicit as {private_ip}:{port}")
    if role == "scheduler" and positionals:
        raise Refusal(f"dask scheduler: unexpected arguments {positionals}")
    if role == "worker":
        if len(positionals) != 1:
            raise Refusal(f"dask worker: expected exactly one scheduler address, got {positionals}")
        out[positional_at[0]] = dial(positionals[0], "dask worker scheduler address")
    return out, notes
