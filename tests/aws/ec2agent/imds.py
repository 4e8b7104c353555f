"""The instance metadata service (IMDSv2) of each booted instance: a token, the instance
role's name and its credentials, as EC2 serves them at 169.254.169.254 to a process on the
instance.

One listener per instance, on the instance's own private IP and a free port (EC2's address is
link-local and the same for every instance; here the address is what tells instances apart).
The node's processes find it through AWS_EC2_METADATA_SERVICE_ENDPOINT, the SDKs' variable
for it, which the runtime gives the node's key fetch. Like EC2, it answers the credentials
only when the instance runs with an instance profile (read from moto, not assumed), it
requires the IMDSv2 token (the instances are launched with HttpTokens=required), and the
role's name is the one the profile holds in IAM.
"""

import http.server
import json
import secrets
import threading
import time


class InstanceMetadata:
    def __init__(self, ip, instance_id, role_of):
        """`role_of()` -> the role name of the instance's profile, or None (no profile)."""
        self.instance_id = instance_id
        self.role_of = role_of
        self.tokens = set()
        self.requests = []
        imds = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status, body=""):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                imds.requests.append(("PUT", self.path))
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token" or not ttl.isdigit() \
                        or not 1 <= int(ttl) <= 21600:
                    return self.answer(400)
                token = secrets.token_urlsafe(24)
                imds.tokens.add(token)
                self.answer(200, token)

            def do_GET(self):
                imds.requests.append(("GET", self.path))
                # HttpTokens=required: no token, no answer (IMDSv1 is off).
                if self.headers.get("X-aws-ec2-metadata-token") not in imds.tokens:
                    return self.answer(401)
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == "/latest/meta-data/instance-id":
                    return self.answer(200, imds.instance_id)
                if not self.path.startswith(base):
                    return self.answer(404)
                role = imds.role_of()
                if role is None:
                    return self.answer(404)
                if self.path == base:
                    return self.answer(200, role)
                if self.path != base + role:
                    return self.answer(404)
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                self.answer(200, json.dumps({
                    "Code": "Success", "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIA" + secrets.token_hex(8).upper(),
                    "SecretAccessKey": secrets.token_urlsafe(30),
                    "Token": secrets.token_urlsafe(60), "Expiration": expires,
                    "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))

        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{ip}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name=f"imds-{instance_id}")
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
