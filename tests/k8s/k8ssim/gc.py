"""The garbage collector and the namespace controller of the simulated cluster.

Owns `GarbageCollector`, a worker thread fed by store change notifications:
- an object whose ownerReferences all point at uids that no longer exist is deleted (Background;
  pods then go through graceful deletion); dangling owners at create time are allowed and
  collected the same way; when some owners remain, references to the missing ones are dropped;
- Foreground deletion (owner with the `foregroundDeletion` finalizer): its dependents are
  deleted and the finalizer is removed once no dependent with blockOwnerDeletion=true remains;
- Orphan deletion (`orphan` finalizer): the owner's references are stripped from dependents,
  then the finalizer is removed;
- a Terminating namespace: every object in it is deleted, then the namespace is removed
  (its `kubernetes` finalizer in spec.finalizers is dropped).
"""

import queue
import threading

from .store import RESOURCES, ApiError


class GarbageCollector:
    def __init__(self, store, errors):
        self.store = store
        self.errors = errors
        self._q = queue.Queue()
        self._thread = None
        self._stop = False
        self.idle = threading.Event()
        self.idle.set()
        store.subscribe(self._on_change)

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-gc", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop = True
        self._q.put(None)

    # ----- notifications (called outside the store lock, any thread) -----
    def _on_change(self, etype, kind, obj):
        meta = obj["metadata"]
        ns = meta.get("namespace")
        key = (kind, ns, meta["name"])
        if etype == "DELETED":
            self._put(("owner-gone", meta["uid"]))
            for ref in meta.get("ownerReferences") or []:
                self._put(("foreground-check", ref.get("uid")))
            if ns:
                self._put(("namespace-check", ns))
            return
        fins = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if "foregroundDeletion" in fins:
                self._put(("foreground", key, meta["uid"]))
            if "orphan" in fins:
                self._put(("orphan", key, meta["uid"]))
        if kind == "Namespace" and (obj.get("status") or {}).get("phase") == "Terminating":
            self._put(("namespace", meta["name"]))
        if etype == "ADDED" and meta.get("ownerReferences"):
            self._put(("check-owners", key))

    def _put(self, item):
        self.idle.clear()
        self._q.put(item)

    def _run(self):
        while not self._stop:
            try:
                item = self._q.get(timeout=0.5)
            except queue.Empty:
                self.idle.set()
                continue
            if item is None:
                break
            try:
                self._handle(item)
            except Exception as exc:   # a GC bug is a simulator bug: report, keep going
                self.errors("gc", {"item": repr(item), "error": repr(exc)})
            if self._q.empty():
                self.idle.set()

    # ----- work -----
    def _delete(self, kind, ns, name, propagation="Background"):
        try:
            self.store.delete(kind, ns, name, propagation=propagation)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def _handle(self, item):
        what = item[0]
        if what == "owner-gone":
            for dep in self.store.dependents(item[1]):
                self._check_owners(dep)
        elif what == "check-owners":
            kind, ns, name = item[1]
            obj = self.store.get(kind, ns, name)
            if obj is not None:
                self._check_owners(obj)
        elif what in ("foreground", "foreground-check"):
            owner = self.store.get(*item[1]) if what == "foreground" else self.store.get_by_uid(item[1])
            if owner is None or "foregroundDeletion" not in (owner["metadata"].get("finalizers") or []):
                return
            if not owner["metadata"].get("deletionTimestamp"):
                return
            self._foreground(owner)
        elif what == "orphan":
            owner = self.store.get(*item[1])
            if owner is None or owner["metadata"]["uid"] != item[2]:
                return
            uid = item[2]
            for dep in self.store.dependents(uid):
                m = dep["metadata"]
                self._strip_refs(dep["kind"], m.get("namespace"), m["name"], {uid})
            m = owner["metadata"]
            self.store.drop_finalizer(owner["kind"], m.get("namespace"), m["name"], "orphan")
        elif what in ("namespace", "namespace-check"):
            nsobj = self.store.get("Namespace", None, item[1])
            if nsobj is None or (nsobj.get("status") or {}).get("phase") != "Terminating":
                return
            self._namespace(item[1], delete=(what == "namespace"))

    def _check_owners(self, dep):
        m = dep["metadata"]
        refs = m.get("ownerReferences") or []
        if not refs:
            return
        missing = {r.get("uid") for r in refs if not self._owner_exists(r, m.get("namespace"))}
        if not missing:
            return
        if len(missing) == len({r.get("uid") for r in refs}):
            if not m.get("deletionTimestamp"):
                self._delete(dep["kind"], m.get("namespace"), m["name"])
        else:
            self._strip_refs(dep["kind"], m.get("namespace"), m["name"], missing)

    def _owner_exists(self, ref, namespace):
        owner = self.store.get_by_uid(ref.get("uid"))
        if owner is None:
            return False
        return owner.get("kind") == ref.get("kind") and owner["metadata"]["name"] == ref.get("name")

    def _strip_refs(self, kind, ns, name, uids):
        def fn(o):
            refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
            if refs:
                o["metadata"]["ownerReferences"] = refs
            else:
                o["metadata"].pop("ownerReferences", None)
        try:
            self.store.mutate(kind, ns, name, fn)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def _foreground(self, owner):
        uid = owner["metadata"]["uid"]
        blocking = 0
        for dep in self.store.dependents(uid):
            m = dep["metadata"]
            ref = next(r for r in m.get("ownerReferences") or [] if r.get("uid") == uid)
            if not m.get("deletionTimestamp"):
                self._delete(dep["kind"], m.get("namespace"), m["name"], "Foreground"
                             if self.store.dependents(m["uid"]) else "Background")
            if ref.get("blockOwnerDeletion") and self.store.get(dep["kind"], m.get("namespace"), m["name"]):
                blocking += 1
        if blocking == 0:
            m = owner["metadata"]
            self.store.drop_finalizer(owner["kind"], m.get("namespace"), m["name"], "foregroundDeletion")

    def _namespace(self, ns, delete):
        remaining = 0
        for kind, res in RESOURCES.items():
            if not res.namespaced:
                continue
            for obj in self.store.list(kind, ns):
                remaining += 1
                if delete and not obj["metadata"].get("deletionTimestamp"):
                    self._delete(kind, ns, obj["metadata"]["name"])
                elif obj["metadata"].get("deletionTimestamp") and kind != "Pod" and \
                        obj["metadata"].get("finalizers"):
                    pass   # waits for its finalizers like the real namespace controller
        if delete:
            remaining = sum(len(self.store.list(k, ns)) for k, r in RESOURCES.items() if r.namespaced)
        if remaining == 0:
            self.store.finish_namespace(ns)
