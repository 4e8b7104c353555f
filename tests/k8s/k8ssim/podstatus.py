"""The pod status the simulated kubelet reports (pure: the node's PodRun in, a PodStatus out).

Owns the shape: phase (the kubelet's getPhase for one container, terminal for deleted pods),
the conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled (the
scheduler's, kept) with lastTransitionTime moved only when a status flips and
observedGeneration, hostIP(s), podIP(s), startTime, qosClass, reason/message, and the container
status (image, imageID, containerID, ready, started, restartCount, state, lastState,
volumeMounts, resources).
"""

from . import noderuntime, podspec


def pod_phase(pod, run):
    policy = pod["spec"].get("restartPolicy", "Always")
    if run.pod_reason is not None:
        return "Failed"     # ShouldEvict (activeDeadlineSeconds): Failed at once, then the kill
    if run.running:
        return "Running"
    if run.stage == "terminal" and run.terminated:
        if run.deleted or policy != "Always":
            return "Succeeded" if run.terminated["exitCode"] == 0 else "Failed"
        return "Running"
    if run.stage == "terminal":
        return "Failed" if run.deleted or run.pod_reason else "Pending"
    if run.last_state is not None:
        return "Running"
    return "Pending"

def _cond(run, type_, status, reason=None, message=None, generation=1):
    old = run.conditions.get(type_)
    now = noderuntime.rfc3339()
    c = {"type": type_, "status": status, "lastProbeTime": None,
         "lastTransitionTime": old["lastTransitionTime"] if old and old["status"] == status
         else now, "observedGeneration": generation}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    run.conditions[type_] = c
    return c

def pod_status(pod, run, host_ip):
    c = pod["spec"]["containers"][0]
    gen = pod["metadata"].get("generation", 1)
    phase = pod_phase(pod, run)
    sandbox = run.ip is not None and run.stage != "terminal"
    has_readiness = run.plan is not None and "readiness" in run.plan.probes
    ready = run.running and run.started_flag and (run.ready if has_readiness else True)
    conds = [_cond(run, "PodReadyToStartContainers", "True" if sandbox else "False",
                        generation=gen),
             _cond(run, "Initialized", "True", generation=gen)]
    if ready:
        conds += [_cond(run, "Ready", "True", generation=gen),
                  _cond(run, "ContainersReady", "True", generation=gen)]
    elif phase == "Succeeded":
        conds += [_cond(run, t, "False", "PodCompleted", generation=gen)
                  for t in ("Ready", "ContainersReady")]
    else:
        msg = f"containers with unready status: [{c['name']}]"
        conds += [_cond(run, t, "False", "ContainersNotReady", msg, generation=gen)
                  for t in ("Ready", "ContainersReady")]
    old_sched = next((x for x in (pod.get("status") or {}).get("conditions") or []
                      if x.get("type") == "PodScheduled"), None)
    conds.append(old_sched or _cond(run, "PodScheduled", "True", generation=gen))
    cs = {"name": c["name"], "image": c.get("image", ""),
          "imageID": podspec.image_id(c.get("image", "")) if run.pulled else "",
          "ready": bool(ready), "restartCount": run.restart_count,
          "started": bool(run.running and run.started_flag), "lastState": {}}
    if run.container_id and (run.running or run.terminated):
        cs["containerID"] = run.container_id
    if run.running:
        cs["state"] = {"running": {"startedAt": noderuntime.rfc3339(run.started_at)}}
    elif run.terminated and run.stage == "terminal":
        cs["state"] = {"terminated": dict(run.terminated)}
    else:
        reason, message = run.waiting or ("ContainerCreating", None)
        cs["state"] = {"waiting": {"reason": reason, **({"message": message}
                                                        if message else {})}}
    if run.last_state:
        cs["lastState"] = {"terminated": dict(run.last_state)}
    if run.mounts:
        cs["volumeMounts"] = run.mounts
    res = c.get("resources") or {}
    if res.get("requests") or res.get("limits"):
        cs["resources"] = {k: res[k] for k in ("requests", "limits") if res.get(k)}
    st = {"observedGeneration": gen, "phase": phase, "conditions": conds,
          "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
          "startTime": noderuntime.rfc3339(run.start_time),
          "containerStatuses": [cs], "qosClass": podspec.qos_class(pod)}
    if run.ip:
        st["podIP"] = run.ip
        st["podIPs"] = [{"ip": run.ip}]
    if run.pod_reason:
        st["reason"], st["message"] = run.pod_reason
    return st
