"""The task definition and the task: what Fargate would run, read strictly.

Pure: DescribeTaskDefinition's `taskDefinition` and DescribeTasks' task in, TaskSpec out, or
Refusal.  Whatever the agent cannot give its Fargate meaning (volumes, another entry point,
health checks, environment files, ...) is refused instead of ignored.
"""

import re

from vmboot.common import Refusal
from vmboot.dockerrun import IMAGE_RE

from .sandbox import in_networks

CONTAINER_NAME = "dask"
DEFAULT_STOP_TIMEOUT = 30
MAX_STOP_TIMEOUT = 30  # Fargate allows 120; the agent caps it to keep tests short

# Fargate's task sizes: cpu units -> the memory (MiB) allowed with it.
FARGATE_SIZES = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4096 + 1, 1024)),
    1024: set(range(2048, 8192 + 1, 1024)),
    2048: set(range(4096, 16384 + 1, 1024)),
    4096: set(range(8192, 30720 + 1, 1024)),
    8192: set(range(16384, 61440 + 1, 4096)),
    16384: set(range(32768, 122880 + 1, 8192)),
}

# Container keys and what the agent does with them.  Keys moto fills in with empty defaults
# are accepted when empty.
CONTAINER_KEYS = {
    "name", "image", "essential", "memoryReservation", "memory", "cpu", "command",
    "environment", "secrets", "portMappings", "logConfiguration", "stopTimeout",
    "startTimeout", "dockerLabels", "ulimits",
}
CONTAINER_EMPTY_KEYS = {"mountPoints", "volumesFrom", "systemControls", "dependsOn",
                        "environmentFiles", "extraHosts", "dnsServers", "dnsSearchDomains",
                        "links", "entryPoint", "credentialSpecs"}
CONTAINER_FALSE_KEYS = {"readonlyRootFilesystem", "privileged", "interactive", "pseudoTerminal",
                        "disableNetworking"}
TASK_EMPTY_KEYS = {"volumes", "placementConstraints", "inferenceAccelerators"}
TASK_REFUSED_KEYS = {"proxyConfiguration", "pidMode", "ipcMode"}
# The image's entry point (prepare.sh) installs packages when these are set; not emulated.
IMAGE_INSTALL_VARS = ("EXTRA_APT_PACKAGES", "EXTRA_CONDA_PACKAGES", "EXTRA_PIP_PACKAGES",
                      "USE_MAMBA")
AWSLOGS_OPTIONS = {"awslogs-group", "awslogs-region", "awslogs-stream-prefix",
                   "awslogs-create-group", "mode", "max-buffer-size"}
SSM_ARN_RE = re.compile(r"^arn:aws[a-z-]*:ssm:(?P<region>[^:]+):(?P<account>[0-9]+):"
                        r"parameter/(?P<rest>.+)$")
ACCOUNT_RE = re.compile(r"^arn:aws[a-z-]*:ecs:(?P<region>[^:]+):(?P<account>[0-9]+):")


class Secret:
    def __init__(self, env_name, value_from, parameter_name):
        self.env_name = env_name
        self.value_from = value_from
        self.parameter_name = parameter_name


class TaskSpec:
    def __init__(self):
        self.task_arn = None
        self.task_id = None
        self.cluster_arn = None
        self.region = None
        self.account = None
        self.private_ip = None
        self.container = None
        self.command = None
        self.environment = {}        # name -> value (task definition, then overrides)
        self.override_env = []       # names set by containerOverrides
        self.secrets = []            # [Secret]
        self.image_version = None
        self.execution_role_arn = None
        self.task_role_arn = None
        self.log = None              # {"group", "stream", "region", "create_group"} or None
        self.stop_timeout = DEFAULT_STOP_TIMEOUT
        self.cpu = None
        self.memory = None
        self.notes = []


def _name_value_list(items, what, value_key):
    out = {}
    for item in items or []:
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise Refusal(f"{what}: an entry without a name: {item!r}")
        if name in out:
            raise Refusal(f"{what}: {name} is given twice")
        value = item.get(value_key)
        if not isinstance(value, str):
            raise Refusal(f"{what}: {name} has no string {value_key}")
        out[name] = value
    return out


def _parameter_name(value_from, region, account):
    """An SSM parameter name from a secret's valueFrom (an ARN or a plain name)."""
    if value_from.startswith("arn:"):
        m = SSM_ARN_RE.match(value_from)
        if not m:
            raise Refusal(f"secret valueFrom {value_from!r} is not an SSM parameter ARN"
                          " (Secrets Manager and other sources are not emulated)")
        if m.group("region") != region or m.group("account") != account:
            raise Refusal(f"secret valueFrom {value_from!r} is in {m.group('region')}/"
                          f"{m.group('account')}, not the task's {region}/{account}")
        # Hierarchical names start with '/', which the ARN does not repeat.
        rest = m.group("rest")
        name = "/" + rest if "/" in rest else rest
    else:
        name = value_from
    if ":" in name:
        raise Refusal(f"secret valueFrom {value_from!r}: version or label selectors are not"
                      " emulated")
    return name


def _fargate_size(cpu, memory):
    try:
        cpu_units, mib = int(cpu), int(memory)
    except (TypeError, ValueError):
        raise Refusal(f"task cpu {cpu!r} / memory {memory!r}: Fargate needs both, as integers")
    if mib not in FARGATE_SIZES.get(cpu_units, set()):
        raise Refusal(f"task cpu {cpu_units} with memory {mib} MiB is not a Fargate size"
                      " (RunTask would fail: 'No Fargate configuration exists for given"
                      " values')")
    return cpu_units, mib


def interpret_task(task, taskdef, region, distributed_version):
    """-> TaskSpec, or Refusal."""
    spec = TaskSpec()
    spec.task_arn = task["taskArn"]
    spec.task_id = spec.task_arn.rsplit("/", 1)[-1]
    spec.cluster_arn = task.get("clusterArn")
    m = ACCOUNT_RE.match(spec.task_arn)
    if not m:
        raise Refusal(f"task ARN {spec.task_arn!r} is not an ECS task ARN")
    spec.region, spec.account = m.group("region"), m.group("account")
    if spec.region != region:
        raise Refusal(f"task is in {spec.region}, the agent watches {region}")

    # -- launch and network -----------------------------------------------------------------
    launch = task.get("launchType") or ""
    capacity = task.get("capacityProviderName") or ""
    if launch != "FARGATE" and capacity not in ("FARGATE", "FARGATE_SPOT"):
        if launch or capacity:
            raise Refusal(f"task launch type {launch!r} / capacity provider {capacity!r} is not"
                          " Fargate")
        spec.notes.append("moto reports no launch type or capacity provider for this task"
                          " (a capacity-provider RunTask); taken as Fargate")
    if taskdef.get("networkMode") != "awsvpc":
        raise Refusal(f"networkMode {taskdef.get('networkMode')!r}: Fargate needs awsvpc")
    if "FARGATE" not in (taskdef.get("requiresCompatibilities") or []):
        raise Refusal("the task definition's requiresCompatibilities lacks FARGATE")
    enis = [a for a in task.get("attachments", []) if a.get("type") == "ElasticNetworkInterface"]
    if len(enis) != 1:
        raise Refusal(f"task has {len(enis)} ENI attachments; a Fargate task has one")
    details = {d.get("name"): d.get("value") for d in enis[0].get("details", [])}
    spec.private_ip = details.get("privateIPv4Address")
    if not in_networks(spec.private_ip):
        raise Refusal(f"task private IP {spec.private_ip!r} is not in 127.0.0.0/8 or"
                      " 10.0.0.0/8, which are the only addresses the sandbox holds")

    for key in TASK_REFUSED_KEYS:
        if taskdef.get(key):
            raise Refusal(f"task definition {key} is not emulated")
    for key in TASK_EMPTY_KEYS:
        if taskdef.get(key):
            raise Refusal(f"task definition {key} {taskdef[key]!r} is not emulated")
    platform = taskdef.get("runtimePlatform") or {}
    if platform.get("operatingSystemFamily", "LINUX") != "LINUX":
        raise Refusal(f"runtimePlatform {platform!r}: the image is a Linux image")

    # -- overrides --------------------------------------------------------------------------
    overrides = task.get("overrides") or {}
    for key in overrides:
        if key not in ("containerOverrides", "cpu", "memory", "executionRoleArn",
                       "taskRoleArn") and overrides[key]:
            raise Refusal(f"task override {key} is not emulated")
    spec.cpu, spec.memory = _fargate_size(overrides.get("cpu") or taskdef.get("cpu"),
                                          overrides.get("memory") or taskdef.get("memory"))
    spec.execution_role_arn = overrides.get("executionRoleArn") or taskdef.get(
        "executionRoleArn")
    spec.task_role_arn = overrides.get("taskRoleArn") or taskdef.get("taskRoleArn")

    # -- the container ----------------------------------------------------------------------
    containers = taskdef.get("containerDefinitions") or []
    if len(containers) != 1 or containers[0].get("name") != CONTAINER_NAME:
        raise Refusal(f"task definition containers {[c.get('name') for c in containers]}:"
                      f" expected exactly one, named {CONTAINER_NAME!r}")
    c = dict(containers[0])
    for key, value in c.items():
        if key in CONTAINER_KEYS:
            continue
        if key in CONTAINER_EMPTY_KEYS and not value:
            continue
        if key in CONTAINER_FALSE_KEYS and value is False:
            continue
        raise Refusal(f"container {key}={value!r} is not emulated")
    if c.get("essential") is not True:
        raise Refusal("container dask is not essential: the task would outlive Dask")
    mem_res = c.get("memoryReservation")
    if not isinstance(mem_res, int) or mem_res <= 0 or mem_res > spec.memory:
        raise Refusal(f"memoryReservation {mem_res!r} is not within the task's {spec.memory}"
                      " MiB")
    if c.get("memory") is not None and not (mem_res <= c["memory"] <= spec.memory):
        raise Refusal(f"container memory {c['memory']!r} is not between memoryReservation and"
                      " the task memory")
    image = c.get("image") or ""
    im = IMAGE_RE.match(image)
    if not im:
        raise Refusal(f"image {image!r} is not ghcr.io/dask/dask:<version>-py3.12")
    if im.group("version") != distributed_version:
        raise Refusal(f"image {image} is Dask {im.group('version')}, but the agent's --python"
                      f" has distributed {distributed_version}")
    spec.image_version = im.group("version")
    for pm in c.get("portMappings") or []:
        if pm.get("hostPort") not in (None, pm.get("containerPort")):
            raise Refusal(f"port mapping {pm!r}: awsvpc needs hostPort == containerPort")
        if pm.get("protocol", "tcp") != "tcp":
            raise Refusal(f"port mapping {pm!r} is not tcp")
    if c.get("stopTimeout") is not None:
        st = c["stopTimeout"]
        if not isinstance(st, int) or st < 0:
            raise Refusal(f"stopTimeout {st!r} is not a non-negative integer")
        spec.stop_timeout = min(st, MAX_STOP_TIMEOUT)
        if st > MAX_STOP_TIMEOUT:
            spec.notes.append(f"stopTimeout {st} capped to {MAX_STOP_TIMEOUT} s")

    env = _name_value_list(c.get("environment"), "container environment", "value")
    secrets = _name_value_list(c.get("secrets"), "container secrets", "valueFrom")
    command = c.get("command")

    cos = overrides.get("containerOverrides") or []
    for co in cos:
        if co.get("name") != CONTAINER_NAME:
            raise Refusal(f"containerOverrides for {co.get('name')!r}, which is not a container"
                          " of the task definition")
        for key, value in co.items():
            if key in ("name", "command", "environment", "cpu", "memory", "memoryReservation"):
                continue
            if value:
                raise Refusal(f"containerOverrides {key} is not emulated")
        if co.get("command"):
            command = co["command"]
            spec.notes.append("command from containerOverrides")
        for name, value in _name_value_list(co.get("environment"), "containerOverrides"
                                            " environment", "value").items():
            env[name] = value
            spec.override_env.append(name)

    both = sorted(set(env) & set(secrets))
    if both:
        raise Refusal(f"variables {both} are set by both environment and secrets")
    for name in IMAGE_INSTALL_VARS:
        if env.get(name) or name in secrets:
            raise Refusal(f"{name} makes the image's prepare.sh install packages at start,"
                          " which the agent does not emulate")
    for name, value in env.items():
        if "PRIVATE KEY" in value:
            raise Refusal(f"the plain environment variable {name} holds a private key; keys"
                          " belong in secrets, never in the task definition")
    spec.environment = env
    spec.command = command
    spec.secrets = [Secret(n, v, _parameter_name(v, spec.region, spec.account))
                    for n, v in secrets.items()]
    if spec.secrets and not spec.execution_role_arn:
        raise Refusal("the container has secrets but the task has no executionRoleArn, so ECS"
                      " could not fetch them")

    # -- logs -------------------------------------------------------------------------------
    lc = c.get("logConfiguration")
    if lc:
        if lc.get("logDriver") != "awslogs":
            raise Refusal(f"logDriver {lc.get('logDriver')!r}: only awslogs is emulated")
        if lc.get("secretOptions"):
            raise Refusal("logConfiguration secretOptions are not emulated")
        opts = lc.get("options") or {}
        unknown = sorted(set(opts) - AWSLOGS_OPTIONS)
        if unknown:
            raise Refusal(f"awslogs options {unknown} are not emulated")
        for key in ("awslogs-group", "awslogs-region", "awslogs-stream-prefix"):
            if not opts.get(key):
                raise Refusal(f"awslogs option {key} is missing (Fargate needs the stream"
                              " prefix; the group and region name the destination)")
        if opts["awslogs-region"] != region:
            raise Refusal(f"awslogs-region {opts['awslogs-region']} is not {region}")
        if opts.get("awslogs-create-group", "false") not in ("true", "false"):
            raise Refusal(f"awslogs-create-group {opts['awslogs-create-group']!r}")
        if not spec.execution_role_arn:
            raise Refusal("awslogs on Fargate needs an executionRoleArn (its agent writes the"
                          " logs with that role)")
        spec.log = {
            "group": opts["awslogs-group"],
            "stream": f"{opts['awslogs-stream-prefix']}/{CONTAINER_NAME}/{spec.task_id}",
            "region": opts["awslogs-region"],
            "create_group": opts.get("awslogs-create-group") == "true",
        }
    else:
        spec.notes.append("no logConfiguration: output goes to dask.log only")
    spec.container = c
    return spec
