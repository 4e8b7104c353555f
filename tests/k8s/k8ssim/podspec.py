"""Pod spec -> run plan: what the simulated node runs for a pod, or why it cannot (pure).

Owns the reading of a pod for the kubelet (kubelet.py acts on what this returns):
- resource requests (cpu millicores, memory bytes) for the scheduler, the image check;
- `$(VAR)` expansion the way Kubernetes expands command/args/env (`$$` escapes, undefined
  references stay literal);
- the container environment: `value`, `valueFrom` fieldRef / resourceFieldRef / secretKeyRef /
  configMapKeyRef (errors worded as the kubelet words them);
- secret/configMap volumes (`items`, modes, `defaultMode`, `optional`) projected into
  `WORKDIR/pods/<ns>_<pod>/root<mountPath>/...`;
- the container command through tests/aws `ecsagent.entry` (clusterctl's entry script) and
  `vmboot.dockerrun.translate_dask_args` (0.0.0.0 -> the pod IP, paths under mounts -> the
  rooted copies, `dask` -> `PY -m dask`);
- cluster DNS at container start (clusterdns.py): a Service name in the dialled Dask addresses
  and in env addresses becomes its clusterIP; an NXDOMAIN name is left for the process;
- probes (httpGet/tcpSocket, named ports resolved through the container ports).

Nothing here touches processes or files; the only input from the outside world is the
`lookup(kind, namespace, name)` callable (Secrets, ConfigMaps, Services, Namespaces).  Failures are typed:
`Unsupported` (the simulator cannot give it the same meaning as a real node: logged to
sim-errors.jsonl), `ConfigError` (CreateContainerConfigError, retried like the kubelet) and
`MountError` (FailedMount, retried).
"""

import base64
import hashlib
import math
import os
import posixpath
import re
import sys
from fractions import Fraction

_AWS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "aws")
if _AWS not in sys.path:
    sys.path.insert(0, _AWS)

from ecsagent.entry import KILL_AFTER_SECONDS, TTL_GRACE_SECONDS, interpret_command  # noqa: E402
from ecsagent.sandbox import NETWORKS  # noqa: E402
from vmboot.common import Refusal  # noqa: E402
from vmboot.dockerrun import parse_address, translate_dask_args  # noqa: E402
from ecsagent.taskdef import IMAGE_INSTALL_VARS  # noqa: E402

# The Dask project's images, whose entrypoint (tini, prepare.sh) execs the container's args.
DASK_IMAGE_RE = re.compile(r"^(ghcr\.io/dask/dask|daskdev/dask|docker\.io/daskdev/dask)(:[^/]+)?$")

from .clusterdns import ADDRESS_RE, NXDOMAIN, DNSUnsupported, PodDNS, is_name  # noqa: E402

IMAGE_REPOSITORY = "ghcr.io/dask/dask"
BASE_ENV_KEYS = ("PATH", "HOME", "LANG")


class PodSpecError(Exception):
    reason = "CreateContainerError"
    sim = False          # True: a limitation of the simulator (sim-errors.jsonl)
    retry = False        # True: the kubelet retries (the referenced object may appear)

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Unsupported(PodSpecError):
    """The simulator cannot run this the way a real node would."""
    reason = "CreateContainerError"
    sim = True


class ConfigError(PodSpecError):
    """CreateContainerConfigError (missing Secret/ConfigMap/key for env); retried."""
    reason = "CreateContainerConfigError"
    retry = True


class MountError(PodSpecError):
    """MountVolume.SetUp failed; the container stays ContainerCreating; retried."""
    reason = "ContainerCreating"
    retry = True

    def __init__(self, volume, message):
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume


# ---- quantities -------------------------------------------------------------------------------

_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
           "Ei": 2 ** 60, "n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6),
           "m": Fraction(1, 1000), "": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9,
           "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}
_QTY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|"
                     r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")


def parse_quantity(value):
    """A resource.Quantity string (or number) -> Fraction; ValueError when malformed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fraction(str(value))
    m = _QTY_RE.match(str(value).strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    number = Fraction(m.group(1))
    if m.group(2):
        return number * Fraction(10) ** int(m.group(2)[1:])
    return number * _SUFFIX[m.group(3) or ""]


def cpu_millis(value):
    return math.ceil(parse_quantity(value) * 1000)


def mem_bytes(value):
    return math.ceil(parse_quantity(value))


def _container_requests(c):
    res = c.get("resources") or {}
    req = dict(res.get("limits") or {})      # requests default to limits
    req.update(res.get("requests") or {})
    return req


def pod_requests(pod):
    """(cpu millicores, memory bytes) the scheduler accounts for this pod: the sum over the
    containers, at least the largest init container, plus the pod overhead."""
    spec = pod.get("spec") or {}
    cpu = mem = 0
    for c in spec.get("containers") or []:
        req = _container_requests(c)
        cpu += cpu_millis(req.get("cpu", 0))
        mem += mem_bytes(req.get("memory", 0))
    for c in spec.get("initContainers") or []:
        req = _container_requests(c)
        cpu = max(cpu, cpu_millis(req.get("cpu", 0)))
        mem = max(mem, mem_bytes(req.get("memory", 0)))
    over = spec.get("overhead") or {}
    return cpu + cpu_millis(over.get("cpu", 0)), mem + mem_bytes(over.get("memory", 0))


def qos_class(pod):
    """Guaranteed / Burstable / BestEffort, as the API server computes it."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests = dict(limits)
        requests.update({k: v for k, v in (res.get("requests") or {}).items()
                         if k in ("cpu", "memory")})
        if any(parse_quantity(v) != 0 for v in list(limits.values()) + list(requests.values())):
            any_set = True
        if set(limits) != {"cpu", "memory"}:
            guaranteed = False
        elif any(parse_quantity(requests[k]) != parse_quantity(limits[k]) for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# ---- the image --------------------------------------------------------------------------------

def check_image(image, distributed_version):
    """None when `image` is the installed Dask; else why it cannot be run (the pull fails)."""
    if not isinstance(image, str) or not image:
        return "no image"
    if "@" in image:
        return (f"image {image!r} is pinned by digest; the simulator cannot tell which Dask"
                " version the digest holds")
    repo, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:
        repo, tag = image, "latest"
    if repo != IMAGE_REPOSITORY:
        return (f"image {image!r} is not {IMAGE_REPOSITORY}; only the Dask image can be run"
                " (as the installed distributed)")
    m = re.match(r"^(?P<v>[^-]+)(?:-py3\.(?P<py>[0-9]+))?$", tag)
    if not m or m.group("v") != distributed_version:
        return (f"image tag {tag!r} is not the installed distributed version"
                f" {distributed_version!r} (optionally -py3.X)")
    return None


def image_id(image):
    """A stable stand-in for the digest a registry would report for `image`."""
    repo = image.rpartition(":")[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(('k8s-sim ' + image).encode()).hexdigest()}"


# ---- $(VAR) expansion -------------------------------------------------------------------------

def expand(text, mapping):
    """Kubernetes' expansion: `$(NAME)` -> mapping[NAME] when defined, else left as written;
    `$$` -> `$`; any other `$` stays."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2:close]
                out.append(mapping[name] if name in mapping else f"$({name})")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# ---- environment ------------------------------------------------------------------------------

def _decode_secret(secret, key, what):
    raw = base64.b64decode((secret.get("data") or {})[key])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsupported(f"{what}: key {key!r} is not UTF-8; the simulator passes environment"
                          " values as text")


def _field_ref(pod, path, pod_ip, host_ip):
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip or "",
        "status.hostIPs": host_ip or "",
        "status.podIP": pod_ip or "",
        "status.podIPs": pod_ip or "",
    }
    if path not in simple:
        raise Unsupported(f"fieldRef {path!r} is not a field the kubelet can expose")
    return simple[path]


def _resource_ref(container, ref, node_alloc):
    res = ref.get("resource", "")
    kind, _, what = res.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory"):
        raise Unsupported(f"resourceFieldRef {res!r} is not supported by the simulator")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(what)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(what)
    if value is None:
        if kind == "requests":
            value = 0
        else:
            value = (node_alloc or {}).get(what)
            if value is None:
                raise Unsupported(f"resourceFieldRef {res!r}: no limit and no node allocatable")
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


def resolve_env(pod, container, lookup, pod_ip, host_ip, node_alloc=None):
    """The container's env in order -> [(name, value, source)], as the kubelet builds it."""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    if container.get("envFrom"):
        raise Unsupported("envFrom is not interpreted by the simulator")
    out = []
    defined = {}
    for e in container.get("env") or []:
        name = e.get("name")
        if "value" in e or "valueFrom" not in e:
            value = expand(e.get("value") or "", defined)
            source = "value"
        else:
            vf = e["valueFrom"] or {}
            if "fieldRef" in vf:
                value = _field_ref(pod, vf["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
                source = f"fieldRef:{vf['fieldRef'].get('fieldPath')}"
            elif "resourceFieldRef" in vf:
                value = _resource_ref(container, vf["resourceFieldRef"], node_alloc)
                source = f"resourceFieldRef:{vf['resourceFieldRef'].get('resource')}"
            elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
                is_secret = "secretKeyRef" in vf
                ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
                kind = "Secret" if is_secret else "ConfigMap"
                obj = lookup(kind, ns, ref.get("name", ""))
                optional = bool(ref.get("optional"))
                key = ref.get("key", "")
                if obj is None:
                    if optional:
                        continue
                    raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
                store_key = "data"
                if key not in (obj.get(store_key) or {}):
                    if optional:
                        continue
                    raise ConfigError(f"couldn't find key {key} in {kind} {ns}/{ref.get('name')}")
                value = (_decode_secret(obj, key, f"env {name}") if is_secret
                         else obj["data"][key])
                source = f"{'secret' if is_secret else 'configMap'}:{ref.get('name')}/{key}"
            else:
                raise Unsupported(f"env {name}: valueFrom {sorted(vf)} is not supported")
        defined[name] = value
        out.append((name, value, source))
    return out


# ---- volumes ----------------------------------------------------------------------------------

class ProjectedFile:
    def __init__(self, rel, data, mode, key):
        self.rel, self.data, self.mode, self.key = rel, data, mode, key


def _plain_rel(path, volume):
    if (not path or path.startswith("/") or ".." in path.split("/")
            or posixpath.normpath(path) != path):
        raise Unsupported(f"volume {volume}: item path {path!r} is not a plain relative path")
    return path


def project_volume(pod, volume, lookup):
    """A secret/configMap volume -> [ProjectedFile] (MountError when the object is missing)."""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    vname = volume.get("name")
    if "secret" in volume:
        src = volume["secret"] or {}
        kind, ref_name, label = "Secret", src.get("secretName", ""), "secret"
    elif "configMap" in volume:
        src = volume["configMap"] or {}
        kind, ref_name, label = "ConfigMap", src.get("name", ""), "configmap"
    else:
        raise Unsupported(f"volume {vname}: only secret and configMap volumes are simulated,"
                          f" not {sorted(k for k in volume if k != 'name')}")
    obj = lookup(kind, ns, ref_name)
    if obj is None:
        if src.get("optional"):
            return []
        raise MountError(vname, f'{label} "{ref_name}" not found')
    data = {}
    for k, v in (obj.get("data") or {}).items():
        data[k] = base64.b64decode(v) if kind == "Secret" else v.encode("utf-8")
    if kind == "ConfigMap":
        for k, v in (obj.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v)
    default_mode = src.get("defaultMode", 0o644)
    files = []
    items = src.get("items")
    if items:
        for it in items:
            key = it.get("key", "")
            if key not in data:
                if src.get("optional"):
                    continue
                what = "secret" if kind == "Secret" else "config"
                raise MountError(vname, f"{label} references non-existent {what} key: {key}")
            files.append(ProjectedFile(_plain_rel(it.get("path", ""), vname), data[key],
                                       it.get("mode", default_mode), key))
    else:
        for key in sorted(data):
            files.append(ProjectedFile(_plain_rel(key, vname), data[key], default_mode, key))
    return files


# ---- probes -----------------------------------------------------------------------------------

class ProbePlan:
    def __init__(self, kind, probe, container):
        self.kind = kind                       # readiness / liveness / startup
        self.initial_delay = int(probe.get("initialDelaySeconds") or 0)
        self.period = int(probe.get("periodSeconds") or 10)
        self.timeout = int(probe.get("timeoutSeconds") or 1)
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        self.grace = probe.get("terminationGracePeriodSeconds")
        self.error = None                      # the probe errors every time with this
        self.path = "/"
        self.scheme = "HTTP"
        self.headers = []
        self.host = None
        if "httpGet" in probe:
            h = probe["httpGet"] or {}
            self.action = "http"
            self.path = h.get("path") or "/"
            self.scheme = h.get("scheme") or "HTTP"
            self.headers = [(x.get("name"), x.get("value")) for x in h.get("httpHeaders") or []]
            self.host = h.get("host")
            self.port = self._port(h.get("port"), container)
        elif "tcpSocket" in probe:
            t = probe["tcpSocket"] or {}
            self.action = "tcp"
            self.host = t.get("host")
            self.port = self._port(t.get("port"), container)
        else:
            raise Unsupported(f"{kind} probe: only httpGet and tcpSocket probes are simulated,"
                              f" not {sorted(k for k in probe if k in ('exec', 'grpc'))}")
        if self.host:
            raise Unsupported(f"{kind} probe: host {self.host!r} (probes of other hosts) is not"
                              " simulated")

    def _port(self, port, container):
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        self.error = f"port {port} not found"
        return None


# ---- the whole pod ----------------------------------------------------------------------------

POD_SPEC_KEYS = {
    "containers", "restartPolicy", "activeDeadlineSeconds", "automountServiceAccountToken",
    "enableServiceLinks", "volumes", "securityContext", "terminationGracePeriodSeconds",
    "nodeName", "schedulerName", "serviceAccountName", "serviceAccount", "dnsPolicy", "priority",
    "priorityClassName", "preemptionPolicy", "tolerations", "nodeSelector", "imagePullSecrets",
    "hostname", "subdomain", "setHostnameAsFQDN",
}
POD_FALSE_KEYS = {"hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"}
CONTAINER_KEYS = {
    "name", "image", "command", "args", "env", "ports", "readinessProbe", "livenessProbe",
    "startupProbe", "resources", "securityContext", "volumeMounts", "imagePullPolicy",
    "terminationMessagePath", "terminationMessagePolicy", "resizePolicy",
}
CONTAINER_FALSE_KEYS = {"stdin", "stdinOnce", "tty"}
MOUNT_KEYS = {"name", "mountPath", "readOnly"}


def _check_shape(pod):
    spec = pod.get("spec") or {}
    for k, v in spec.items():
        if k in POD_FALSE_KEYS and not v:
            continue
        if k in ("initContainers", "ephemeralContainers", "readinessGates") and not v:
            continue
        if k not in POD_SPEC_KEYS:
            raise Unsupported(f"pod spec.{k} is not simulated")
    sc = spec.get("securityContext") or {}
    for k, v in sc.items():
        if k == "seccompProfile" and (v or {}).get("type") in ("RuntimeDefault", "Unconfined"):
            continue
        raise Unsupported(f"pod securityContext.{k}={v!r} is not simulated")
    containers = spec.get("containers") or []
    if len(containers) != 1:
        raise Unsupported(f"the pod has {len(containers)} containers; the simulator runs"
                          " exactly one (clusterctl's `dask`)")
    c = containers[0]
    for k, v in c.items():
        if k in CONTAINER_FALSE_KEYS and not v:
            continue
        if k == "workingDir" and not v:
            continue
        if k not in CONTAINER_KEYS:
            raise Unsupported(f"container {c.get('name')}: {k} is not simulated")
    csc = c.get("securityContext") or {}
    for k, v in csc.items():
        if k == "allowPrivilegeEscalation" and v is False:
            continue
        if k == "privileged" and v is False:
            continue
        if k == "capabilities" and not (v or {}).get("add"):
            continue
        if k == "seccompProfile" and (v or {}).get("type") in ("RuntimeDefault", "Unconfined"):
            continue
        raise Unsupported(f"container securityContext.{k}={v!r} is not simulated")
    for p in c.get("ports") or []:
        if p.get("protocol", "TCP") != "TCP" or p.get("hostPort"):
            raise Unsupported(f"container port {p}: only TCP ports without hostPort are simulated")
    return c


class RunPlan:
    """What to run: argv/env of the local process, the projected files, the probes."""

    def __init__(self):
        self.container = None       # the container dict
        self.role = None            # scheduler / worker
        self.argv = []              # local argv
        self.env = {}               # local environment
        self.env_sources = {}       # name -> where it came from (never the value)
        self.env_rewritten = []     # names whose value was a path under a mount
        self.files = []             # [(rooted path, bytes, mode, source)]
        self.dirs = []              # rooted directories to create (mount points, files root)
        self.expires = None
        self.container_argv = []    # the argv after `clusterctl-node` as the pod gives it
        self.files_root = None
        self.notes = []
        self.probes = {}            # kind -> ProbePlan
        self.dns = []               # [{where, name, answer (IP | NXDOMAIN), query, source}]
        self.resolver = None        # the PodDNS the names were resolved with


def plan_pod(pod, *, python, pod_dir, pod_ip, host_ip, lookup, base_env, node_alloc=None):
    """The RunPlan for `pod` on this node, or a PodSpecError."""
    c = _check_shape(pod)
    plan = RunPlan()
    plan.container = c
    spec = pod.get("spec") or {}
    root = os.path.join(pod_dir, "root")

    def rooted(path):
        return os.path.join(root, path.lstrip("/"))

    # Volumes first (the kubelet mounts before it creates the container).
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    mounts = {}
    for m in c.get("volumeMounts") or []:
        extra = set(m) - MOUNT_KEYS
        if extra:
            raise Unsupported(f"volumeMount {m.get('name')}: {sorted(extra)} not simulated")
        mp = m.get("mountPath", "")
        if not mp.startswith("/") or posixpath.normpath(mp) != mp or mp == "/":
            raise Unsupported(f"volumeMount {m.get('name')}: mountPath {mp!r} is not a plain"
                              " absolute path")
        if m.get("name") not in volumes:
            raise Unsupported(f"volumeMount {m.get('name')}: no such volume")
        for other in mounts:
            if mp.startswith(other + "/") or other.startswith(mp + "/"):
                raise Unsupported(f"nested mounts {other} and {mp} are not simulated")
        files = project_volume(pod, volumes[m["name"]], lookup)
        mounts[mp] = {f.rel: f for f in files}
        plan.dirs.append(rooted(mp))
        for f in files:
            plan.files.append((os.path.join(rooted(mp), f.rel), f.data, f.mode,
                               f"{m['name']}:{f.key}"))
    for vname, v in volumes.items():
        if not any(m.get("name") == vname for m in c.get("volumeMounts") or []):
            project_volume(pod, v, lookup)   # an unmounted volume must still be mountable

    env_list = resolve_env(pod, c, lookup, pod_ip, host_ip, node_alloc)
    variables = {n: v for n, v, _ in env_list}
    words = [expand(w, variables) for w in (c.get("command") or [])]
    words += [expand(w, variables) for w in (c.get("args") or [])]
    if not c.get("command"):
        # No command: the image's entrypoint runs with `args` as its arguments. For the Dask
        # images that is tini, then prepare.sh, which installs the EXTRA_* packages (not
        # emulated here) and execs its arguments. Any other image's entrypoint is unknown.
        if not DASK_IMAGE_RE.match(c.get("image") or ""):
            raise Unsupported(f"the container has no command and image {c.get('image')!r} is not"
                              " a Dask image: its entrypoint is not simulated")
        if not c.get("args"):
            raise Unsupported("the Dask image's entrypoint without arguments would start a shell")
        for name in IMAGE_INSTALL_VARS:
            if variables.get(name):
                raise Unsupported(f"{name} makes the image's prepare.sh install packages at"
                                  " start, which the simulator does not emulate")
    try:
        entry = interpret_command(words, variables)
    except Refusal as e:
        raise Unsupported(str(e))
    plan.files_root = entry.root
    plan.expires = entry.expires
    plan.container_argv = entry.argv
    plan.role = entry.argv[1]

    def under_mount(value):
        for mp in mounts:
            if value == mp or value.startswith(mp + "/"):
                return mp
        return None

    if under_mount(entry.root) not in (None, entry.root):
        raise Unsupported(f"files root {entry.root} lies inside the read-only mount"
                          f" {under_mount(entry.root)}: `mkdir -p` would fail there")
    if entry.root not in mounts:
        plan.dirs.append(rooted(entry.root))

    def root_path(value):
        mp = under_mount(value)
        if mp is not None:
            rel = value[len(mp) + 1:]
            if value != mp and rel not in mounts[mp]:
                raise Refusal(f"path {value!r} is under the mount {mp} but its volume has no"
                              " such file")
            return rooted(value)
        if value == entry.root or value.startswith(entry.root + "/"):
            raise Refusal(f"path {value!r} is under the files root {entry.root}, which no"
                          " volume fills and the entry script writes nothing into")
        if value.startswith("/"):
            raise Refusal(f"path {value!r} is outside every volume mount: it names the image's"
                          " filesystem, which the simulator cannot provide")
        return value

    dns = plan.resolver = PodDNS(pod, pod_ip, lookup)

    def dial(value, what):
        m = ADDRESS_RE.match(value)
        if m and is_name(m.group("host")):
            try:
                new, rec = dns.rewrite_address(value)
            except DNSUnsupported as e:
                raise Refusal(f"{what} {value!r}: {e}")
            plan.dns.append({"where": what, **rec})
            if rec["answer"] == NXDOMAIN:
                plan.notes.append(f"{what} {value!r}: {rec['name']} is no Service (NXDOMAIN);"
                                  " left for the process, whose lookup fails as a pod's would")
                return value
            value = new
        return parse_address(value, what, NETWORKS)

    try:
        dask_args, notes = translate_dask_args(plan.role, entry.argv[2:], pod_ip, root_path,
                                               NETWORKS, dial=dial)
    except Refusal as e:
        raise Unsupported(str(e))
    plan.notes += notes
    plan.argv = [python, "-m", "dask", plan.role] + dask_args

    env = dict(base_env)
    sources = {k: "node" for k in env}
    for name, value, source in env_list:
        env[name] = value
        sources[name] = source
    for name in entry.unset:
        env.pop(name, None)
        sources.pop(name, None)
    for name in list(env):
        if sources[name] == "node":
            continue
        env[name] = _env_dns(plan, dns, name, env[name])
        if not env[name].startswith("/"):
            continue
        if under_mount(env[name]) is not None:
            try:
                env[name] = root_path(env[name])
            except Refusal as e:
                raise Unsupported(f"env {name}: {e}")
            plan.env_rewritten.append(name)
    plan.env = env
    plan.env_sources = sources

    for kind, key in (("startup", "startupProbe"), ("readiness", "readinessProbe"),
                      ("liveness", "livenessProbe")):
        if c.get(key):
            plan.probes[kind] = ProbePlan(kind, c[key], c)
    return plan


def _env_dns(plan, dns, name, value):
    """An env value `[scheme://]NAME:PORT` with NAME a Service -> its clusterIP (see dial)."""
    m = ADDRESS_RE.match(value)
    if not m or not is_name(m.group("host")):
        return value
    dask = name.startswith("DASK_") or m.group("scheme")
    try:
        new, rec = dns.rewrite_address(value)
    except DNSUnsupported as e:
        if dask:   # Dask reads DASK_* as its config: the process may dial it
            raise Unsupported(f"env {name}: {value!r}: {e}")
        plan.dns.append({"where": f"env {name}", "name": m.group("host"),
                         "answer": "not simulated", "reason": str(e)})
        return value
    if rec["answer"] != NXDOMAIN or dask:
        plan.dns.append({"where": f"env {name}", **rec})
    return new


def backstop(expires, now):
    """The entry script's tail for `now`: None (exit 0 at once, expired) or
    (seconds until timeout's SIGTERM, seconds from then until its SIGKILL)."""
    left = expires - int(now)
    if left <= 0:
        return None
    return left + TTL_GRACE_SECONDS, KILL_AFTER_SECONDS
