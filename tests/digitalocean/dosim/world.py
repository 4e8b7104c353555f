"""The simulated account's state and the droplets' life: timers, boots, power, billing.

Owns `World` (one re-entrant lock over droplets, SSH keys, tags, firewalls, actions and events)
and `Droplet`. A created droplet is `new` with no addresses; after --ip-delay its private IPv4
shows; after --boot-delay it is `active` and its user_data is booted through the VM runtime
(tests/vmboot: `rt.boot(id, user_data, private_ip, on_power_off)`); its public IPv4 shows
--public-ip-lag seconds after that (so `active` comes before the public address, as on
DigitalOcean), and the public-address forwarder opens then. Power-off from inside (the run
script's TTL or Dask exiting) makes it `off`: still listed, still billed. Deleting stops its
processes. Timers run on one ticker thread; the runtime is never called with the lock held.
Billing: per second from creation to deletion (60 s minimum, $0.01 minimum), off or not.
"""

import heapq
import itertools
import threading
import time
import traceback

from . import catalog, network

BOOT_STOP_DEADLINE = 60.0


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Droplet:
    def __init__(self, did, name, region, size, image, vpc_uuid, tags, ssh_keys, user_data,
                 opts, created):
        self.id, self.name, self.region, self.size, self.image = did, name, region, size, image
        self.vpc_uuid, self.tags, self.ssh_keys, self.user_data = vpc_uuid, tags, ssh_keys, user_data
        self.monitoring = bool(opts.get("monitoring"))
        self.backups = bool(opts.get("backups"))
        self.ipv6 = bool(opts.get("ipv6"))
        self.public_networking = opts.get("public_networking", True) is not False
        self.with_droplet_agent = opts.get("with_droplet_agent")
        self.created = created
        self.status = "new"
        self.private_ip = self.private_mask = None
        self.public_ip = self.public_mask = self.public_gw = None
        self.v6 = None
        self.private_visible = self.public_visible = False
        self.booted = None        # None | "booted" | "refused: ..." | "error: ..." | "no user_data"
        self.action_id = None


class World:
    def __init__(self, opts, runtime, refusal, forwarder, errors):
        self.opts = opts
        self.rt, self.Refusal, self.fwd, self.errors = runtime, refusal, forwarder, errors
        self.lock = threading.RLock()
        self._cv = threading.Condition(self.lock)
        self._timers, self._seq = [], itertools.count()
        self._stop = threading.Event()
        self._threads = []
        self.droplets, self.deleted = {}, []
        self.keys, self.tags, self.firewalls, self.actions = {}, {}, {}, {}
        self.events = []
        self.vpcs = catalog.default_vpcs()
        self.addresses = network.Addresses(self.vpcs)
        self._ids = {"droplet": itertools.count(480000001), "action": itertools.count(2400000001),
                     "key": itertools.count(43000001)}
        self.started = time.time()

    def next_id(self, kind):
        return next(self._ids[kind])

    # ----- timers -----
    def start(self):
        t = threading.Thread(target=self._tick_loop, name="dosim-ticker", daemon=True)
        t.start()
        self._threads.append(t)

    def schedule(self, delay, fn):
        with self._cv:
            heapq.heappush(self._timers, (time.time() + max(0.0, delay), next(self._seq), fn))
            self._cv.notify()

    def _tick_loop(self):
        while not self._stop.is_set():
            with self._cv:
                now = time.time()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
                if not due:
                    wait = min(1.0, self._timers[0][0] - now) if self._timers else 1.0
                    self._cv.wait(max(0.01, wait))
                    continue
            for fn in due:
                self._safe(fn)

    def _safe(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            self.errors.record("exception", {"where": getattr(fn, "__name__", "timer"),
                                             "traceback": traceback.format_exc()[-4000:]})

    def _spawn(self, fn, *args):
        t = threading.Thread(target=self._safe, args=(fn, *args), daemon=True)
        t.start()
        with self.lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def event(self, kind, droplet_id=None, **detail):
        with self.lock:
            self.events.append({"time": round(time.time(), 3), "event": kind,
                                "droplet_id": droplet_id, **detail})

    # ----- tags -----
    def tag_canonical(self, name, exact=False):
        """The tag's canonical name: case-insensitive for names in bodies, exact for URLs."""
        t = self.tags.get(str(name).lower())
        if t is None or (exact and t["name"] != name):
            return None
        return t["name"]

    def ensure_tag(self, name):
        with self.lock:
            t = self.tags.get(name.lower())
            if t is None:
                t = self.tags[name.lower()] = {"name": name, "created": time.time()}
                self.event("tag-created", tag=name)
            return t["name"]

    # ----- actions -----
    def new_action(self, kind, droplet, delay):
        with self.lock:
            aid = self.next_id("action")
            self.actions[aid] = {"id": aid, "type": kind, "resource_id": droplet.id,
                                 "resource_type": "droplet", "region_slug": droplet.region,
                                 "started": time.time(), "completed": None,
                                 "status": "in-progress"}
        return aid

    def complete_action(self, aid, status="completed"):
        with self.lock:
            a = self.actions.get(aid)
            if a and a["status"] == "in-progress":
                a["status"], a["completed"] = status, time.time()

    # ----- droplets -----
    def create_droplets(self, names, fields):
        """Create the droplets (fields already validated); returns them."""
        o = self.opts
        made = []
        with self.lock:
            now = time.time()
            for name in names:
                d = Droplet(self.next_id("droplet"), name, fields["region"], fields["size"],
                            fields["image"], fields["vpc_uuid"], list(fields["tags"]),
                            list(fields["ssh_keys"]), fields.get("user_data"), fields, now)
                d.private_ip, d.private_mask = self.addresses.private(d.vpc_uuid)
                if d.public_networking:
                    d.public_ip, d.public_mask, d.public_gw = self.addresses.public()
                if d.ipv6:
                    d.v6 = network.Addresses.v6(catalog.AVAILABLE_REGIONS.index(d.region), d.id)
                self.droplets[d.id] = d
                d.action_id = self.new_action("create", d, o["boot_delay"])
                made.append(d)
                self.event("created", d.id, name=name, region=d.region, size=d.size,
                           image=d.image["slug"] or d.image["id"], tags=d.tags,
                           user_data_bytes=len((d.user_data or "").encode()))
                if not d.ssh_keys:
                    self.event("root-password-emailed", d.id,
                               detail="created without ssh_keys: DigitalOcean e-mails a root "
                                      "password for every such droplet")
        for d in made:
            t_private = min(o["ip_delay"], o["boot_delay"])
            self.schedule(t_private, lambda did=d.id: self._reveal_private(did))
            self.schedule(o["boot_delay"], lambda did=d.id: self._activate(did))
            if d.public_networking:
                self.schedule(o["boot_delay"] + o["public_ip_lag"],
                              lambda did=d.id: self._reveal_public(did))
        return made

    def _reveal_private(self, did):
        with self.lock:
            d = self.droplets.get(did)
            if d is not None and not d.private_visible:
                d.private_visible = True
                self.event("private-ip", did, ip=d.private_ip)

    def _activate(self, did):
        with self.lock:
            d = self.droplets.get(did)
            if d is None or d.status != "new":
                return
            d.private_visible = True
            d.status = "active"
            self.complete_action(d.action_id)
            self.event("active", did)
            user_data, ip = d.user_data, d.private_ip
            if not user_data:
                d.booted = "no user_data"
            elif not user_data.lstrip().startswith("#"):
                # DigitalOcean hands user_data to cloud-init as is (plain text, never base64-
                # decoded): cloud-init does not recognise it, and nothing runs.
                d.booted = "not run: user_data is not plain-text cloud-init (base64?)"
                self.errors.record("user-data-not-run", {
                    "droplet_id": did, "starts_with": user_data[:16],
                    "detail": "DigitalOcean passes user_data to cloud-init verbatim; it must "
                              "be plain text (e.g. #cloud-config), not base64"})
                user_data = None
        if user_data:
            self._spawn(self._boot, did, user_data, ip)

    def _boot(self, did, user_data, ip):
        if self._stop.is_set():
            return
        try:
            self.rt.boot(str(did), user_data, ip, on_power_off=self._powered_off)
            outcome = "booted"
        except self.Refusal as exc:
            outcome = f"refused: {exc}"
        except Exception as exc:
            outcome = f"error: {exc!r}"
            self.errors.record("boot-error", {"droplet_id": did,
                                              "traceback": traceback.format_exc()[-4000:]})
        with self.lock:
            d = self.droplets.get(did)
            if d is not None:
                d.booted = outcome
            self.event("boot", did, outcome=outcome)
            gone = d is None
        if gone and outcome == "booted":
            self._stop_node(did, "deleted while booting")
        elif outcome == "booted" and d.image["slug"] in catalog.UFW_IMAGES:
            self.errors.record("divergence", {
                "droplet_id": did, "image": d.image["slug"],
                "detail": "the Docker 1-Click image turns UFW on (ssh, 2375, 2376 only): on "
                          "DigitalOcean, Dask on the host network would not be reachable on "
                          "8786/8787, from the VPC either; the simulator drops public "
                          "connections but cannot block VPC traffic"})

    def _reveal_public(self, did):
        with self.lock:
            d = self.droplets.get(did)
            if d is None or d.public_visible:
                return
            d.public_visible = True
            self.event("public-ip", did, ip=d.public_ip)
            pub, priv = d.public_ip, d.private_ip
        for port in self.opts["public_ports"]:
            try:
                self.fwd.open(("droplet", did, port), (pub, port), (priv, port),
                              lambda src, sport, did=did, port=port: self.verdict(did, port, src))
            except OSError as exc:
                self.errors.record("forward-bind-failed", {
                    "droplet_id": did, "listen": f"{pub}:{port}", "error": str(exc),
                    "hint": "public addresses need the sandbox namespace (10.0.0.0/8 on lo)"})
                self.event("forward-bind-failed", did, listen=f"{pub}:{port}", error=str(exc))

    def verdict(self, did, port, src_ip):
        with self.lock:
            d = self.droplets.get(did)
            if d is None:
                return "refuse", "droplet deleted"
            if d.image["slug"] in catalog.UFW_IMAGES:
                return "drop", f"guest firewall: UFW of the {d.image['slug']} image denies {port}"
            return network.inbound_verdict(self, d, "tcp", port, src_ip)

    def _powered_off(self, node_id, reason):
        try:
            did = int(node_id)
        except (TypeError, ValueError):
            return
        with self.lock:
            d = self.droplets.get(did)
            if d is None:
                return
            d.status = "off"
            self.event("powered-off", did, reason=reason)
            return {"droplet_status": "off", "still_billed": True}

    def guest_power_off(self, did, why):
        """As if the guest powered itself off (test hook): processes stopped, status `off`."""
        with self.lock:
            d = self.droplets.get(did)
            if d is None:
                return False
            booted = d.booted == "booted"
            if booted:
                d.booted = f"stopped by {why}"
        if booted:
            self._stop_node(did, why)
        self._powered_off(str(did), why)
        return True

    def delete_droplet(self, did, why="DELETE"):
        with self.lock:
            d = self.droplets.pop(did, None)
            if d is None:
                return None
            now = time.time()
            self.deleted.append(self.billing_of(d, now, deleted=now))
            for fw in self.firewalls.values():
                if did in fw["droplet_ids"]:
                    fw["droplet_ids"].remove(did)
            self.event("deleted", did, why=why)
        self.fwd.close_matching(lambda k: isinstance(k, tuple) and k[:2] == ("droplet", did))
        if d.booted == "booted":
            self._spawn(self._stop_node, did, "deleted")
        return d

    def _stop_node(self, did, why):
        """Stop a booted droplet's processes (rt.stop is bounded by the runtime's own grace)."""
        try:
            self.rt.stop(str(did))
            self.event("processes-stopped", did, why=why)
        except Exception as exc:
            self.event("stop-failed", did, why=why, error=repr(exc))
            self.errors.record("stop-failed", {"droplet_id": did, "why": why, "error": repr(exc)})

    def power(self, d, kind):
        """power_off | shutdown | power_on | reboot | power_cycle: the action id."""
        aid = self.new_action(kind, d, self.opts["action_delay"])

        def finish():
            stop = False
            with self.lock:
                cur = self.droplets.get(d.id)
                if cur is None:
                    self.complete_action(aid, "errored")
                    return
                if kind in ("power_off", "shutdown"):
                    cur.status, stop = "off", True
                elif kind == "power_on":
                    cur.status = "active"
                else:          # reboot, power_cycle: the OS restarts; runcmd does not run again
                    cur.status, stop = "active", True
                stop = stop and cur.booted == "booted"
                if stop:
                    cur.booted = f"stopped by {kind}"
                self.complete_action(aid)
                self.event(kind, d.id, note="cloud-init runcmd runs once per instance: "
                           "nothing is started again" if kind != "power_off" and
                           kind != "shutdown" else "")
            if stop:
                self._stop_node(d.id, kind)
        self.schedule(self.opts["action_delay"], finish)
        return aid

    # ----- billing and inventory -----
    def billing_of(self, d, now, deleted=None):
        seconds = max(0.0, (deleted or now) - d.created)
        hourly = catalog.size(d.size)["price_hourly"]
        cost = max(0.01, round(hourly * max(60.0, seconds) / 3600.0, 5))
        return {"id": d.id, "name": d.name, "size": d.size, "status": d.status,
                "created_at": iso(d.created), "deleted_at": iso(deleted) if deleted else None,
                "seconds": round(seconds, 1), "billed_seconds": round(max(60.0, seconds), 1),
                "price_hourly": hourly, "cost_usd": cost}

    def inventory(self):
        now = time.time()
        with self.lock:
            drops = []
            for d in self.droplets.values():
                drops.append({
                    "id": d.id, "name": d.name, "status": d.status, "region": d.region,
                    "size": d.size, "image": d.image["slug"] or d.image["id"],
                    "vpc_uuid": d.vpc_uuid, "tags": list(d.tags), "ssh_keys": list(d.ssh_keys),
                    "private_ip": d.private_ip, "public_ip": d.public_ip,
                    "private_visible": d.private_visible, "public_visible": d.public_visible,
                    "ipv6": d.v6[0] if d.v6 else None, "monitoring": d.monitoring,
                    "public_networking": d.public_networking, "booted": d.booted,
                    "user_data": d.user_data, "created_at": iso(d.created),
                    "age_seconds": round(now - d.created, 1)})
            live_bill = [self.billing_of(d, now) for d in self.droplets.values()]
            fws = [{k: v for k, v in fw.items() if not k.startswith("_")} | {
                "effective": fw["_effective"]} for fw in self.firewalls.values()]
            out = {
                "droplets": drops, "deleted_droplets": list(self.deleted),
                "ssh_keys": list(self.keys.values()),
                "tags": sorted(t["name"] for t in self.tags.values()),
                "firewalls": fws, "firewall_vpc_reachability": network.vpc_view(self),
                "firewall_egress": network.egress_view(self),
                "vpcs": list(self.vpcs),
                "actions": sorted(self.actions.values(), key=lambda a: a["id"]),
                "events": list(self.events),
                "root_password_emails": [e for e in self.events
                                         if e["event"] == "root-password-emailed"],
                "billing": {"live": live_bill, "deleted": list(self.deleted),
                            "total_usd": round(sum(b["cost_usd"] for b in live_bill + self.deleted), 5)},
            }
        nodes = {}
        for d in drops:
            try:
                nodes[str(d["id"])] = bool(self.rt.alive(str(d["id"])))
            except Exception as exc:
                nodes[str(d["id"])] = f"error: {exc!r}"
            d["alive"] = nodes[str(d["id"])]
        try:
            out["runtime_nodes"] = [{"id": str(n), "alive": bool(self.rt.alive(str(n)))}
                                    for n in self.rt.nodes()]
        except Exception as exc:
            out["runtime_nodes"] = f"error: {exc!r}"
        out["forwarders"] = self.fwd.snapshot()
        return out

    def shutdown(self, deadline=BOOT_STOP_DEADLINE):
        """Stop timers and forwarders, then every droplet's processes (bounded)."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self.fwd.close_all()
        end = time.time() + deadline
        with self.lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, min(10.0, end - time.time())))
        try:
            self.rt.shutdown()
        except Exception:
            self.errors.record("exception", {"where": "runtime shutdown",
                                             "traceback": traceback.format_exc()[-4000:]})
