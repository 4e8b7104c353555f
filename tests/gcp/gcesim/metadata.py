"""The metadata server the instances see at http://169.254.169.254/computeMetadata/v1/.

Owns `MetadataServer`: plain HTTP (threads), answering only requests that carry
`Metadata-Flavor: Google` (403 otherwise, and for any `X-Forwarded-For`, as the real one does),
for the instance whose internal IP is the connection's source address (a node binds its
source to its own IP; any other caller gets 404). Paths: `instance/` (directory listings,
`?recursive=true` JSON), `instance/attributes/KEY` (the instance's metadata, e.g. `user-data`),
`hostname` (`NAME.ZONE.c.PROJECT.internal`), `id`, `name`, `zone`, `machine-type`, `tags`,
`network-interfaces/0/{ip,network,access-configs/0/external-ip}`,
`service-accounts/default/{email,scopes,token}` (a `ya29.` token for the attached service
account with its scopes, or `?scopes=`; no account attached → 404, as Google answers),
`project/project-id`, `project/numeric-project-id`. Bound on 169.254.169.254:80 when the
simulator can put that address on `lo` (the tests' sandbox namespace, root), else on
`--metadata-bind`.
"""

import json
import socket
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import catalog

METADATA_IP = "169.254.169.254"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Metadata Server for VM"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, text, ctype="application/text"):
        data = text.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        md = self.server.md
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        if self.headers.get("X-Forwarded-For"):
            return self._send(403, "Forbidden", "text/html")
        if self.headers.get("Metadata-Flavor") != "Google":
            md.note(self.client_address[0], parts.path, 403)
            return self._send(403, "Missing Metadata-Flavor:Google header.", "text/html")
        status, body, ctype = md.answer(self.client_address[0], parts.path, query,
                                        getattr(self.server, "fixed", None))
        md.note(self.client_address[0], parts.path, status)
        self._send(status, body, ctype)

    do_HEAD = do_GET


class MetadataServer:
    def __init__(self, world, auth, bind, sandbox):
        self.world, self.auth = world, auth
        self.lock = threading.Lock()
        self.log = []
        self.per = {}
        self.added_address = False
        host, _, port = bind.rpartition(":")
        if host == METADATA_IP and sandbox:
            self.added_address = _add_address(METADATA_IP)
        try:
            self.httpd = ThreadingHTTPServer((host, int(port)), _Handler)
        except OSError as exc:
            print(f"gce-sim: metadata server cannot bind {bind} ({exc}); using 127.0.0.1",
                  file=sys.stderr, flush=True)
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.md = self
        h, p = self.httpd.server_address[:2]
        self.url = f"http://{h}" + ("" if p == 80 else f":{p}")
        self.host = h if p == 80 else f"{h}:{p}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True, name="gce-metadata").start()

    def stop(self):
        for inst_id in list(self.per):
            self.close_for({"id": inst_id})
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.added_address:
            subprocess.run(["ip", "addr", "del", f"{METADATA_IP}/32", "dev", "lo"],
                           capture_output=True)

    def note(self, src, path, status):
        with self.lock:
            self.log = (self.log + [{"src": src, "path": path, "status": status}])[-200:]

    def snapshot(self):
        with self.lock:
            return {"url": self.url, "recent": list(self.log[-50:])}

    def open_for(self, inst):
        """A listener of this instance's own (GCE_METADATA_HOST for its processes, e.g. the
        key fetch): it answers as that instance whatever the source address."""
        httpd = ThreadingHTTPServer((self.httpd.server_address[0], 0), _Handler)
        httpd.daemon_threads, httpd.md, httpd.fixed = True, self, inst
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True, name="gce-metadata-vm").start()
        with self.lock:
            self.per[inst["id"]] = httpd
        return f"{httpd.server_address[0]}:{httpd.server_address[1]}"

    def close_for(self, inst):
        with self.lock:
            httpd = self.per.pop(inst["id"], None)
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def answer(self, src, path, query, fixed=None):
        prefix = "/computeMetadata/v1/"
        if path in ("/", "/computeMetadata/", "/computeMetadata/v1"):
            return 200, "computeMetadata/\n" if path != "/computeMetadata/v1" else \
                "instance/\nproject/\n", "application/text"
        if not path.startswith(prefix):
            return 404, "Not Found", "text/html"
        inst = fixed if fixed is not None else self.world.vms.by_ip(src)
        if inst is None:
            return 404, "Not Found (the simulator knows no instance with source address " + \
                src + ")", "text/html"
        tree = self.tree(inst, query)
        node = tree
        rel = path[len(prefix):]
        for seg in [s for s in rel.split("/") if s]:
            if isinstance(node, dict) and seg in node:
                node = node[seg]
            else:
                return 404, "Not Found", "text/html"
        if callable(node):
            return node()
        if isinstance(node, dict):
            if query.get("recursive", ["false"])[0] == "true" or \
                    query.get("alt", [""])[0] == "json":
                return 200, json.dumps(_materialize(node)), "application/json"
            if not rel.endswith("/") and rel:
                return 301, "", "text/html"
            return 200, "".join(k + ("/" if isinstance(v, dict) else "") + "\n"
                                for k, v in node.items()), "application/text"
        if isinstance(node, list):
            return 200, json.dumps(node), "application/json"
        return 200, str(node), "application/text"

    def tree(self, inst, query):
        p, z, name = inst["project"], inst["zone"], inst["name"]
        num = self.world.number(p)
        nic = {"ip": inst["internal_ip"], "network": f"projects/{num}/networks/default",
               "mac": "42:01:0a:80:00:" + f"{int(inst['internal_ip'].rsplit('.', 1)[1]):02x}",
               "gateway": inst["internal_ip"].rsplit(".", 1)[0] + ".1",
               "subnetmask": "255.255.240.0", "access-configs": {}}
        if inst["external_ip"]:
            nic["access-configs"] = {"0": {"external-ip": inst["external_ip"],
                                           "type": "ONE_TO_ONE_NAT"}}
        sas = {}
        if inst["sa"]:
            scopes = inst["scopes"]

            def token():
                wanted = query.get("scopes", [",".join(scopes)])[0].split(",")
                tok = self.auth.mint("serviceAccount:" + inst["sa"], [s for s in wanted if s],
                                     "metadata")
                return 200, json.dumps({"access_token": tok, "expires_in": 3599,
                                        "token_type": "Bearer"}), "application/json"
            acct = {"aliases": "default", "email": inst["sa"], "scopes": "\n".join(scopes),
                    "token": token}
            sas = {"default": acct, inst["sa"]: acct}
        return {
            "instance": {
                "attributes": dict(inst["metadata"]), "hostname": f"{name}.{z}.c.{p}.internal",
                "id": inst["id"], "name": name, "zone": f"projects/{num}/zones/{z}",
                "machine-type": f"projects/{num}/machineTypes/"
                                + inst["api"]["machineType"].rsplit("/", 1)[-1],
                "tags": list(inst["api"]["tags"]["items"]),
                "network-interfaces": {"0": nic}, "service-accounts": sas,
                "scheduling": {k.lower(): str(v) for k, v in inst["api"]["scheduling"].items()
                               if not isinstance(v, dict)}},
            "project": {"project-id": p, "numeric-project-id": num, "attributes": {}},
        }


def _materialize(node):
    if isinstance(node, dict):
        return {k: _materialize(v) for k, v in node.items() if not callable(v)}
    return node


def _add_address(ip):
    """Put ip on lo (sandbox namespace only; needs CAP_NET_ADMIN). True if added now."""
    try:
        s = socket.socket()
        s.bind((ip, 0))
        s.close()
        return False        # already local
    except OSError:
        pass
    r = subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], capture_output=True)
    return r.returncode == 0
