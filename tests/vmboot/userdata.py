"""The cloud-config document: decoding the user-data, its `write_files` and its one `runcmd`.

Pure functions, input text -> parsed values, or Refusal.

The one `runcmd` clusterctl renders (templates/cloud-init.yaml.j2) starts the run script in the
background and sends its output, and so Dask's, to two places, as on the VM:

    ["sh", "-c", "nohup SCRIPT 2>&1 | tee -a /var/log/clusterctl-dask.log >/dev/console 2>&1 &"]

the log file on the disk, and the serial console, which is what EC2 GetConsoleOutput, Azure
boot diagnostics, the GCE serial port or a DigitalOcean console show.  Nothing else is accepted.
"""

import base64
import binascii
import os
import re

import yaml

from .common import Refusal

VM_LOG_PATH = "/var/log/clusterctl-dask.log"
VM_CONSOLE = "/dev/console"
RUNCMD_SHAPE = (f"nohup SCRIPT 2>&1 | tee -a {VM_LOG_PATH} >{VM_CONSOLE} 2>&1 &")
RUNCMD_RE = re.compile(
    r"^nohup (?P<script>/[A-Za-z0-9._/-]+) 2>&1 \| tee -a " + re.escape(VM_LOG_PATH)
    + r" >" + re.escape(VM_CONSOLE) + r" 2>&1 &$"
)


def user_data_text(raw):
    """The user-data as the VM's cloud-init sees it: plain text (DigitalOcean, Azure custom
    data once decoded, GCE metadata) or base64 of it (the EC2 userData attribute).  Plain
    text is recognised by its first line; anything else must be strict base64."""
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        raise Refusal("the node has no user-data")
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes):
        raise Refusal(f"user-data is {type(raw).__name__}, not text")
    if raw[:2] == b"\x1f\x8b":
        raise Refusal("user-data is gzip-compressed, which is not interpreted")
    if not raw.startswith(b"#"):
        try:
            raw = base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError) as e:
            raise Refusal(f"user-data is neither '#cloud-config' text nor valid base64: {e}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refusal(f"user-data is not UTF-8 text (compressed or multipart?): {e}")


def decode_user_data(raw):
    """(text, document) of a `#cloud-config` user-data, plain or base64."""
    text = user_data_text(raw)
    first = text.split("\n", 1)[0]
    if first != "#cloud-config":
        raise Refusal(f"user-data must start with the line '#cloud-config', found {first!r}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise Refusal(f"user-data is not valid YAML: {e}")
    if not isinstance(doc, dict):
        raise Refusal("the cloud-config document is not a mapping")
    unknown = sorted(set(doc) - {"write_files", "runcmd"})
    if unknown:
        raise Refusal(f"cloud-config keys the runtime does not interpret: {unknown}")
    return text, doc


def parse_write_files(doc):
    """-> list of (path, mode, bytes). Refuses anything cloud-init would do differently."""
    entries = doc.get("write_files")
    if not isinstance(entries, list) or not entries:
        raise Refusal("cloud-config has no write_files list")
    files = []
    seen = set()
    for n, entry in enumerate(entries):
        where = f"write_files[{n}]"
        if not isinstance(entry, dict):
            raise Refusal(f"{where} is not a mapping")
        unknown = sorted(set(entry) - {"path", "permissions", "owner", "encoding", "content"})
        if unknown:
            raise Refusal(f"{where} has keys the runtime does not interpret: {unknown}")
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
            raise Refusal(f"{where}: path {path!r} is not an absolute file path")
        if os.path.normpath(path) != path or "//" in path:
            raise Refusal(f"{where}: path {path!r} is not normalised")
        if path in seen:
            raise Refusal(f"{where}: path {path} is written twice")
        seen.add(path)
        perms = entry.get("permissions", "0644")
        if not isinstance(perms, str) or not re.fullmatch(r"0?[0-7]{3,4}", perms):
            raise Refusal(f"{where}: permissions {perms!r} is not an octal string like \"0600\"")
        mode = int(perms, 8)
        owner = entry.get("owner", "root:root")
        if not isinstance(owner, str):
            raise Refusal(f"{where}: owner {owner!r} is not a string")
        content = entry.get("content", "")
        if not isinstance(content, str):
            raise Refusal(f"{where}: content is not a string")
        encoding = entry.get("encoding", "text/plain")
        if encoding in ("b64", "base64"):
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as e:
                raise Refusal(f"{where}: content is not valid base64: {e}")
        elif encoding == "text/plain":
            data = content.encode("utf-8")
        else:
            raise Refusal(f"{where}: encoding {encoding!r} is not interpreted (b64 or text only)")
        files.append((path, mode, data))
    return files


def parse_runcmd(doc, files):
    """The run script's path, from the one accepted `runcmd`."""
    runcmd = doc.get("runcmd")
    if not (isinstance(runcmd, list) and len(runcmd) == 1 and isinstance(runcmd[0], list)
            and len(runcmd[0]) == 3 and runcmd[0][:2] == ["sh", "-c"]
            and isinstance(runcmd[0][2], str)):
        raise Refusal(f"runcmd must be exactly [[\"sh\", \"-c\", \"{RUNCMD_SHAPE}\"]],"
                      f" found {runcmd!r}")
    m = RUNCMD_RE.match(runcmd[0][2])
    if not m:
        raise Refusal("runcmd's shell command is not the background run of a script whose"
                      f" output goes to {VM_LOG_PATH} and {VM_CONSOLE} ({RUNCMD_SHAPE!r}):"
                      f" {runcmd[0][2]!r}")
    script = m.group("script")
    by_path = {p: (mode, data) for p, mode, data in files}
    if script not in by_path:
        raise Refusal(f"runcmd runs {script}, which the user-data does not write")
    mode, data = by_path[script]
    if not mode & 0o100:
        raise Refusal(f"runcmd executes {script} but its permissions {mode:04o} are not executable")
    return script
