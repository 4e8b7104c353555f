"""A userspace TCP forwarder with a per-connection policy: 1:1 NAT plus a cloud firewall.

Owns `TcpForwarder`: `open(key, (listen_ip, port), (target_ip, port), policy)` listens on the
first address and forwards each accepted connection to the second after asking
`policy(src_ip, src_port) -> (verdict, reason)`:
  "allow"  — dial the target (deadline CONNECT_TIMEOUT); if nothing listens there, the client's
             connection is reset (RST), as a NAT in front of a closed port would answer;
  "drop"   — the connection is held, never answered, and closed after `drop_hold` seconds (a
             firewall that drops packets: the client's connect succeeded here, but no byte ever
             comes back, so it times out like a dropped SYN would);
  "refuse" — reset at once.
Targets must be in 127.0.0.0/8 or 10.0.0.0/8 (the simulators never dial anything else).
Every wait has a deadline or is woken by `close()`. `snapshot()` reports per-listener counters.
"""

import ipaddress
import select
import socket
import struct
import threading
import time

ALLOWED_TARGETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
CONNECT_TIMEOUT = 5.0
POLL = 0.5
SEND_TIMEOUT = 60.0


def _reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Listener:
    def __init__(self, key, sock, listen, target, policy):
        self.key, self.sock, self.listen, self.target, self.policy = key, sock, listen, target, policy
        self.stop = threading.Event()
        self.conns = set()
        self.lock = threading.Lock()
        self.counts = {"accepted": 0, "allowed": 0, "dropped": 0, "refused": 0,
                       "target_unreachable": 0}
        self.last = []   # recent decisions


class TcpForwarder:
    def __init__(self, drop_hold=120.0, on_event=None):
        self.drop_hold = float(drop_hold)
        self.on_event = on_event or (lambda event: None)
        self._lock = threading.Lock()
        self._listeners = {}

    def open(self, key, listen, target, policy):
        """Start forwarding; returns the listener (`.listen` is the bound (ip, port), so port 0
        picks a free one); raises OSError if the listen address cannot be bound."""
        tip = ipaddress.ip_address(target[0])
        if not any(tip in net for net in ALLOWED_TARGETS):
            raise ValueError(f"forward target {target[0]} is outside 127.0.0.0/8 and 10.0.0.0/8")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(listen)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.settimeout(POLL)
        lst = _Listener(key, sock, sock.getsockname()[:2], tuple(target), policy)
        with self._lock:
            old = self._listeners.pop(key, None)
            self._listeners[key] = lst
        if old is not None:
            self._close(old)
        threading.Thread(target=self._accept_loop, args=(lst,), daemon=True,
                         name=f"fwd-{listen[0]}:{listen[1]}").start()
        return lst

    def close(self, key):
        with self._lock:
            lst = self._listeners.pop(key, None)
        if lst is not None:
            self._close(lst)

    def close_matching(self, predicate):
        with self._lock:
            keys = [k for k in self._listeners if predicate(k)]
        for k in keys:
            self.close(k)

    def close_all(self):
        self.close_matching(lambda k: True)

    def _close(self, lst):
        lst.stop.set()
        try:
            lst.sock.close()
        except OSError:
            pass
        with lst.lock:
            conns = list(lst.conns)
        for s in conns:
            _reset(s)

    def snapshot(self):
        with self._lock:
            items = list(self._listeners.values())
        return [{"key": list(l.key) if isinstance(l.key, tuple) else l.key,
                 "listen": f"{l.listen[0]}:{l.listen[1]}", "target": f"{l.target[0]}:{l.target[1]}",
                 **l.counts, "recent": list(l.last)} for l in items]

    # ----- threads -----
    def _accept_loop(self, lst):
        while not lst.stop.is_set():
            try:
                client, addr = lst.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            client.settimeout(None)
            with lst.lock:
                lst.counts["accepted"] += 1
                lst.conns.add(client)
            threading.Thread(target=self._serve, args=(lst, client, addr), daemon=True).start()

    def _note(self, lst, verdict, src, reason):
        entry = {"time": round(time.time(), 3), "src": src[0], "verdict": verdict,
                 "reason": reason}
        with lst.lock:
            lst.last = (lst.last + [entry])[-20:]
        self.on_event(dict(entry, listen=f"{lst.listen[0]}:{lst.listen[1]}", key=lst.key))

    def _serve(self, lst, client, addr):
        upstream = None
        try:
            try:
                verdict, reason = lst.policy(addr[0], addr[1])
            except Exception as exc:   # a broken policy refuses rather than letting traffic in
                verdict, reason = "refuse", f"policy error: {exc!r}"
            if verdict == "drop":
                with lst.lock:
                    lst.counts["dropped"] += 1
                self._note(lst, "drop", addr, reason)
                self._hold(lst, client)
                return
            if verdict != "allow":
                with lst.lock:
                    lst.counts["refused"] += 1
                self._note(lst, "refuse", addr, reason)
                return
            try:
                upstream = socket.create_connection(lst.target, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                with lst.lock:
                    lst.counts["target_unreachable"] += 1
                self._note(lst, "reset", addr, f"target {lst.target[0]}:{lst.target[1]}: {exc}")
                return
            client.settimeout(SEND_TIMEOUT)     # sendall() to a peer that stopped reading
            upstream.settimeout(SEND_TIMEOUT)
            with lst.lock:
                lst.counts["allowed"] += 1
                lst.conns.add(upstream)
            self._note(lst, "allow", addr, reason)
            self._pump(lst, client, upstream)
        finally:
            with lst.lock:
                lst.conns.discard(client)
                if upstream is not None:
                    lst.conns.discard(upstream)
            _reset(client) if verdict_is_reset(upstream) else _close_quiet(client)
            if upstream is not None:
                _close_quiet(upstream)

    def _hold(self, lst, client):
        deadline = time.monotonic() + self.drop_hold
        while not lst.stop.is_set() and time.monotonic() < deadline:
            try:
                r, _, _ = select.select([client], [], [], POLL)
                if r and not client.recv(65536):
                    return      # the client gave up
            except (OSError, ValueError):
                return

    def _pump(self, lst, a, b):
        peers = {a: b, b: a}
        open_read = {a, b}
        while open_read and not lst.stop.is_set():
            try:
                readable, _, _ = select.select(list(open_read), [], [], POLL)
            except (OSError, ValueError):
                return
            for s in readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    open_read.discard(s)
                    try:
                        peers[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                try:
                    peers[s].sendall(data)
                except OSError:
                    return


def verdict_is_reset(upstream):
    """The client side is reset (RST) whenever no upstream connection was made."""
    return upstream is None


def _close_quiet(sock):
    try:
        sock.close()
    except OSError:
        pass
