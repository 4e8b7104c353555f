"""From a node's user-data to what runs locally: the files, argv, environment and timers.

`prepare` reads the user-data through `userdata`, `runscript` and `dockerrun` (each strict,
refusing with a reason), lays the node's files out under DIR/<node>/root/ as cloud-init would
under /, and writes DIR/<node>/boot.json.  It starts nothing; `runtime` does.
"""

import json
import os

from .common import Refusal, in_networks, networks_text
from .dockerrun import (
    DASK_OPTIONS, IMAGE_RE, interpret_docker_run, parse_env_file, translate_dask_args,
)
from .runscript import interpret_run_script
from .userdata import VM_CONSOLE, VM_LOG_PATH, decode_user_data, parse_runcmd, parse_write_files


class BootPlan:
    """What `runtime` starts for one node (all paths absolute)."""

    def __init__(self, node_id, ip, node_dir):
        self.node_id = node_id
        self.ip = ip
        self.dir = node_dir
        self.log_path = os.path.join(node_dir, "dask.log")          # /var/log/clusterctl-dask.log
        self.console_path = os.path.join(node_dir, "console.log")   # /dev/console
        self.boot_json = os.path.join(node_dir, "boot.json")
        self.cwd = os.path.join(node_dir, "work")
        self.role = None
        self.argv = None
        self.env = None
        self.echo_before = []
        self.echo_after = []
        self.ttl_minutes = None
        self.power_off_on_exit = False
        # The key fetch before Dask (argv, env), or None when the keys are in the user-data.
        self.fetch = None


def plan_fetch(words, files_by_path, written_dirs, dask_run, rooted, python, base_env,
               metadata_env):
    """The key fetch's `docker run` -> (argv, env) run before Dask, or Refusal."""
    run = interpret_docker_run(words, files_by_path, written_dirs, writable=True)
    if run.name is not None or run.env_files or run.gpus or not run.rm:
        raise Refusal("key fetch: only 'docker run --rm --network host --volume DIR:DIR IMAGE"
                      " python DIR/fetch_secrets.py DIR/secrets.json' is emulated")
    if run.image != dask_run.image:
        raise Refusal(f"key fetch: image {run.image} is not Dask's {dask_run.image}")
    if len(run.volumes) != 1 or run.volumes[0] not in dask_run.volumes:
        raise Refusal(f"key fetch: mounts {run.volumes}, not the one files root Dask mounts")
    root = run.volumes[0]
    if run.argv != ["python", root + "/fetch_secrets.py", root + "/secrets.json"]:
        raise Refusal(f"key fetch: command {run.argv} is not 'python {root}/fetch_secrets.py"
                      f" {root}/secrets.json'")
    for path in run.argv[1:]:
        if path not in files_by_path:
            raise Refusal(f"key fetch: {path} is not a file the user-data writes")
    # A container of the image sees only the image's environment, plus (as a process on the
    # VM's network would) the platform's metadata service, whose address the adapter gives.
    env = dict(base_env)
    env.update(metadata_env or {})
    return [python, rooted(run.argv[1]), rooted(run.argv[2])], env


def prepare(node_id, user_data, ip, node_dir, *, python, distributed_version, base_env,
            networks, image_check=True, metadata_env=None):
    """-> BootPlan, with the files written; Refusal if the user-data cannot run faithfully."""
    if not in_networks(ip, networks):
        raise Refusal(f"private IP {ip!r} is not in {networks_text(networks)}; the runtime binds"
                      " only addresses local to this machine")

    _, doc = decode_user_data(user_data)
    files = parse_write_files(doc)
    files_by_path = {p: (mode, data) for p, mode, data in files}
    written_dirs = {os.path.dirname(p) for p in files_by_path}
    script = parse_runcmd(doc, files)
    try:
        script_src = files_by_path[script][1].decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refusal(f"run script {script} is not UTF-8: {e}")
    script_plan = interpret_run_script(script_src)
    run = interpret_docker_run(script_plan.docker_words, files_by_path, written_dirs)

    notes = []
    m = IMAGE_RE.match(run.image)
    if image_check:
        if not m:
            raise Refusal(f"image {run.image!r} is not ghcr.io/dask/dask:<version>-py3.12")
        if m.group("version") != distributed_version:
            raise Refusal(f"image {run.image} is Dask {m.group('version')}, but {python}"
                          f" has distributed {distributed_version}")
    else:
        notes.append(f"image {run.image} not checked against {python}"
                     f" (distributed {distributed_version})")
    if len(run.argv) < 2 or run.argv[0] != "dask" or run.argv[1] not in DASK_OPTIONS:
        raise Refusal(f"container command {run.argv[:2]} is not 'dask scheduler|worker'")
    role = run.argv[1]

    root = os.path.join(node_dir, "root")

    def rooted(path):
        return os.path.join(root, path.lstrip("/"))

    def root_path(value):
        for vol in run.volumes:
            if value == vol or value.startswith(vol + "/"):
                if ".." in value.split("/"):
                    raise Refusal(f"path {value!r} climbs out of the mounted {vol}")
                return rooted(value)
        for d in sorted(written_dirs):
            if value == d or value.startswith(d + "/"):
                raise Refusal(f"path {value!r} is under {d}, which the user-data writes but"
                              " docker run does not mount, so the container cannot see it")
        return value

    dask_args, arg_notes = translate_dask_args(role, run.argv[2:], ip, root_path, networks)
    notes.extend(arg_notes)
    env = dict(base_env)
    env_file_pairs = []
    for path in run.env_files:
        for key, value in parse_env_file(path, files_by_path[path][1]):
            env_file_pairs.append((key, value))
            env[key] = root_path(value)

    plan = BootPlan(node_id, ip, node_dir)
    plan.role = role
    plan.argv = [python, "-m", "dask", role] + dask_args
    plan.env = env
    plan.echo_before = script_plan.echo_before
    plan.echo_after = script_plan.echo_after
    plan.ttl_minutes = script_plan.ttl_minutes
    plan.power_off_on_exit = script_plan.power_off_on_exit
    if script_plan.fetch_words is not None:
        plan.fetch = plan_fetch(script_plan.fetch_words, files_by_path, written_dirs, run,
                                rooted, python, base_env, metadata_env)

    if os.path.exists(node_dir):
        raise Refusal(f"{node_dir} already exists: this node was booted before (cloud-init runs"
                      " runcmd once per instance)")
    os.makedirs(root)
    for path, mode, data in files:
        target = rooted(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(target, mode)
    os.makedirs(plan.cwd)

    record = {
        "node": node_id,
        "private_ip": ip,
        "role": role,
        "python": python,
        "argv": plan.argv,
        "env": env,
        "cwd": plan.cwd,
        "log": plan.log_path,
        "console": plan.console_path,
        "output": {"script": script, "log_file": VM_LOG_PATH, "console": VM_CONSOLE},
        "container": {
            "image": run.image,
            "argv": run.argv,
            "name": run.name,
            "rm": run.rm,
            "network": run.network,
            "gpus": run.gpus,
            "env_files": run.env_files,
            "env_file_pairs": env_file_pairs,
            "volumes": run.volumes,
        },
        "run_script": script,
        "docker_run_line": script_plan.docker_line,
        "key_fetch": None if plan.fetch is None else {
            "line": script_plan.fetch_line, "argv": plan.fetch[0],
            "metadata_env": sorted(metadata_env or {})},
        "ttl_minutes": script_plan.ttl_minutes,
        "power_off_on_exit": script_plan.power_off_on_exit,
        "ignored_lines": script_plan.ignored,
        "notes": notes,
        "files": [
            {"path": p, "rooted": rooted(p), "mode": f"{mode:04o}", "bytes": len(data)}
            for p, mode, data in files
        ],
    }
    with open(plan.boot_json, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return plan
