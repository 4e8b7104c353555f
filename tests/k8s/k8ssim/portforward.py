"""The pods/portforward subresource over WebSocket, as the kubelet's wsstream serves it.

Owns `PortForwardHandler` (tornado WebSocketHandler, `initialize(sim)`), routed by server.py at
`/api/v1/namespaces/{ns}/pods/{name}/portforward` after auth.  The wire format is the one the
kube crate 5.0.0 (kube-client src/api/portforward.rs) and the kubelet speak:
- subprotocol: the first one the client offers among `v4.channel.k8s.io` and `channel.k8s.io`
  (kube-rs offers `v5.channel.k8s.io, v4.channel.k8s.io`; port-forward has no v5, so v4);
  none offered = the plain binary channel protocol; only unsupported ones = 403;
- `ports=8786&ports=8787` or `ports=8786,8787`; port i uses data channel 2i and error
  channel 2i+1; every binary frame is `[channel][payload]`; the first frame the server sends
  on each channel is the port as 2 little-endian bytes;
- for each port one TCP connection to podIP:port; bytes are pumped both ways; a failed dial
  writes the kubelet's `error forwarding port P to pod SANDBOX, uid : ...` message on the
  error channel; when the pod side ends, the port is done a second later (containerd's
  grace for the other direction); when every port is done the WebSocket is closed (v4 has no
  per-channel close); when the client closes, every pod connection is closed.
Errors before the upgrade are the API server's / kubelet's: 404 Status for a missing pod, 400
Status for a pod without a node, 400 for bad ports, 500 `pod not found ("name_ns")` when the
pod has no live sandbox.
"""

import asyncio
import json
import time
import uuid

import tornado.iostream
import tornado.tcpclient
import tornado.websocket

from .store import ApiError

SUPPORTED = ("v4.channel.k8s.io", "channel.k8s.io")
CLOSE_GRACE_SECONDS = 1.0


def parse_ports(values):
    """Query values of `ports` -> [int] (the kubelet's V4 options), or raise ValueError(msg)."""
    if not values:
        raise ValueError('query parameter "port" is required')
    ports = []
    for raw in values:
        if not raw:
            raise ValueError('query parameter "port" cannot be empty')
        for p in raw.split(","):
            if not p.isdigit() or int(p) > 65535:
                raise ValueError(f'unable to parse "{raw}" as a port: strconv.ParseUint: parsing'
                                 f' "{p}": {"value out of range" if p.isdigit() else "invalid syntax"}')
            if int(p) < 1:
                raise ValueError(f'port "{raw}" must be > 0')
            ports.append(int(p))
    return ports


class _Port:
    def __init__(self, index, port):
        self.index, self.port = index, port
        self.stream = None
        self.pending = []
        self.failed = False
        self.done = False


class PortForwardHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, sim):
        self.sim = sim
        self.ports = []
        self.pod_ip = None
        self.closed = False

    def check_origin(self, origin):
        return True

    def _log_request(self, status):
        q = {k: [v.decode(errors="replace") for v in vs]
             for k, vs in self.request.query_arguments.items()}
        self.sim.log_request({"time": round(time.time(), 3), "method": self.request.method,
                              "path": self.request.path, "query": q, "status": status,
                              "upgrade": self.request.headers.get("Upgrade"),
                              "subprotocol": self.ws_connection.selected_subprotocol
                              if self.ws_connection is not None else None})

    def _status(self, err):
        self._log_request(err.status)
        self.set_status(err.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(err.to_status()))

    def _text(self, code, text):
        self._log_request(code)
        self.set_status(code)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)

    async def get(self, namespace, name, *args, **kwargs):
        store = self.sim.store
        pod = store.get("Pod", namespace, name)
        if pod is None:
            return self._status(ApiError(404, "NotFound", f'pods "{name}" not found',
                                         {"name": name, "kind": "pods"}))
        if not pod.get("spec", {}).get("nodeName"):
            return self._status(ApiError(400, "BadRequest",
                                         f"pod {name} does not have a host assigned"))
        values = [v.decode("utf-8", "replace")
                  for v in self.request.query_arguments.get("ports", [])]
        try:
            ports = parse_ports(values)
        except ValueError as e:
            return self._text(400, str(e))
        kubelet = self.sim.kubelet
        ip = kubelet.pod_ip(namespace, name) if kubelet is not None else None
        if ip is None:
            return self._text(500, f'pod not found ("{name}_{namespace}")')
        offered = [p.strip() for p in
                   self.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if offered and not any(p in SUPPORTED for p in offered):
            self.sim.errors("portforward", {"pod": f"{namespace}/{name}", "offered": offered,
                                            "reason": "no supported binary subprotocol"})
            return self._text(403, f"requested protocol(s) are not supported: {offered};"
                                   f" supports {['', *SUPPORTED]}")
        self.pod_ip = ip
        self.pod_name, self.namespace = name, namespace
        self.sandbox = kubelet.sandbox_id(namespace, name) or ""
        self.ports = [_Port(i, p) for i, p in enumerate(ports)]
        await super().get(namespace, name, *args, **kwargs)

    def select_subprotocol(self, subprotocols):
        for p in subprotocols:
            if p in SUPPORTED:
                return p
        return None

    async def open(self, *args, **kwargs):
        self._log_request(101)
        for p in self.ports:
            head = p.port.to_bytes(2, "little")
            await self._send(2 * p.index, head)
            await self._send(2 * p.index + 1, head)
        for p in self.ports:
            asyncio.ensure_future(self._forward(p))

    async def _send(self, channel, payload):
        if self.closed:
            return
        try:
            await self.write_message(bytes([channel]) + payload, binary=True)
        except tornado.websocket.WebSocketClosedError:
            self.closed = True

    async def _forward(self, p):
        try:
            p.stream = await tornado.tcpclient.TCPClient().connect(self.pod_ip, p.port,
                                                                   timeout=10)
        except Exception as e:
            real = getattr(e, "real_error", None) or e
            reason = ("connect: connection refused" if isinstance(real, ConnectionRefusedError)
                      else "i/o timeout" if isinstance(real, (TimeoutError, asyncio.TimeoutError))
                      else f"{real}")
            netns = uuid.UUID(hex=(self.sandbox or "0" * 32)[:32])
            msg = (f"error forwarding port {p.port} to pod {self.sandbox}, uid : failed to"
                   f' execute portforward in network namespace "/var/run/netns/cni-{netns}":'
                   f" failed to connect to localhost:{p.port} inside namespace {self.sandbox}:"
                   f" dial tcp {self.pod_ip}:{p.port}: {reason}")
            p.failed = True
            await self._send(2 * p.index + 1, msg.encode())
            self._port_done(p)
            return
        for chunk in p.pending:
            p.stream.write(chunk)
        p.pending = []
        try:
            while not self.closed:
                data = await p.stream.read_bytes(65536, partial=True)
                await self._send(2 * p.index, data)
        except tornado.iostream.StreamClosedError:
            pass
        await asyncio.sleep(CLOSE_GRACE_SECONDS)
        if p.stream is not None:
            p.stream.close()
        self._port_done(p)

    def _port_done(self, p):
        p.done = True
        if all(x.done for x in self.ports) and not self.closed:
            self.closed = True
            self.close(1000)

    def on_message(self, message):
        if not isinstance(message, bytes) or len(message) < 1:
            return
        ch, data = message[0], message[1:]
        if ch >= 2 * len(self.ports) or ch % 2 == 1 or not data:
            return
        p = self.ports[ch // 2]
        if p.failed or p.done:
            return
        if p.stream is None:
            p.pending.append(data)
            return
        try:
            p.stream.write(data)
        except tornado.iostream.StreamClosedError:
            pass

    def on_close(self):
        self.closed = True
        for p in self.ports:
            if p.stream is not None:
                p.stream.close()
