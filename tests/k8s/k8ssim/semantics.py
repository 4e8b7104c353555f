"""The API server's semantic validation rules that an OpenAPI schema cannot express.

Owns (after pkg/apis/core/validation and apimachinery's validation helpers): object names per
kind, label/annotation/finalizer syntax, ownerReferences, the PodSpec rules (containers, names,
restartPolicy, ports, probes, resources, volumes/mounts, env, activeDeadlineSeconds), pod update
immutability, Service rules (ports, names, type, clusterIP immutability, source ranges, selector),
Secret/ConfigMap keys, sizes and `immutable`. Errors go into a validate.FieldErrors with the real
messages and field paths.
"""

import base64
import ipaddress
import json
import re

from .validate import parse_quantity

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUAL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
IANA_SVC = re.compile(r"^[-a-z0-9]+$")

MSG_1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                  "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                  "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
MSG_1123_SUB = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                "'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
MSG_1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
            "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
            "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
MSG_QUAL = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
            "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
MSG_LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', "
                   "'_' or '.', and must start and end with an alphanumeric character (e.g. "
                   "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
MSG_ENV = ("a valid environment variable name must consist of alphabetic characters, digits, '_', "
           "'-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  "
           "or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")
MSG_KEY = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
           "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
           "'[-._a-zA-Z0-9]+')")

SUBDOMAIN_KINDS = {"Pod", "Secret", "ConfigMap", "Event", "Endpoints", "Node", "DaskCluster"}


def check_dns_label(fe, path, value):
    if not isinstance(value, str) or len(value) > 63:
        fe.invalid(path, value, "must be no more than 63 characters")
    elif not DNS1123_LABEL.match(value):
        fe.invalid(path, value, MSG_1123_LABEL)


def check_subdomain(fe, path, value):
    if len(value) > 253:
        fe.invalid(path, value, "must be no more than 253 characters")
    if not DNS1123_SUB.match(value):
        fe.invalid(path, value, MSG_1123_SUB)


def check_qualified_name(fe, path, value):
    parts = value.split("/")
    if len(parts) > 2:
        fe.invalid(path, value, "a qualified name " + MSG_QUAL + " with an optional DNS subdomain "
                   "prefix and '/' (e.g. 'example.com/MyName')")
        return
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            fe.invalid(path, value, "prefix part must be non-empty")
        elif len(prefix) > 253 or not DNS1123_SUB.match(prefix):
            fe.invalid(path, value, "prefix part " + MSG_1123_SUB)
    if not name:
        fe.invalid(path, value, "name part must be non-empty")
    elif len(name) > 63:
        fe.invalid(path, value, "name part must be no more than 63 characters")
    elif not QUAL_NAME.match(name):
        fe.invalid(path, value, MSG_QUAL)


def check_labels(fe, path, labels):
    for k, v in (labels or {}).items():
        check_qualified_name(fe, path, k)
        if len(v) > 63:
            fe.invalid(f"{path}", v, "must be no more than 63 characters")
        elif not LABEL_VALUE.match(v):
            fe.invalid(f"{path}", v, MSG_LABEL_VALUE)


def validate_meta(kind, obj, fe, create):
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        if meta.get("generateName"):
            pass
        else:
            fe.required("metadata.name", "name or generateName is required")
    else:
        if kind == "Service":
            if len(name) > 63:
                fe.invalid("metadata.name", name, "must be no more than 63 characters")
            elif not DNS1035_LABEL.match(name):
                fe.invalid("metadata.name", name, MSG_1035)
        elif kind == "Namespace":
            check_dns_label(fe, "metadata.name", name)
        else:
            check_subdomain(fe, "metadata.name", name)
    check_labels(fe, "metadata.labels", meta.get("labels"))
    ann = meta.get("annotations") or {}
    total = 0
    for k, v in ann.items():
        check_qualified_name(fe, "metadata.annotations", k.lower())
        total += len(k) + len(v)
    if total > 262144:
        fe.too_long("metadata.annotations", 262144)
    for i, f in enumerate(meta.get("finalizers") or []):
        check_qualified_name(fe, f"metadata.finalizers[{i}]", f)
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        p = f"metadata.ownerReferences[{i}]"
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                fe.invalid(f"{p}.{f}", ref.get(f, ""), f"{f} must not be empty") if f != "uid" \
                    else fe.invalid(f"{p}.uid", "", "uid must not be empty")
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        fe.invalid("metadata.ownerReferences", meta.get("ownerReferences"),
                   "Only one reference can have Controller set to true. Found \"true\" in "
                   "references for " + ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in
                                                  meta["ownerReferences"] if r.get("controller")))


def validate_object(kind, obj, fe, admission):
    if kind == "Pod":
        validate_pod_spec(obj.get("spec") or {}, "spec", fe)
    elif kind == "Service":
        validate_service_spec(obj.get("spec") or {}, "spec", fe)
    elif kind == "Secret":
        validate_secret(obj, fe)
    elif kind == "ConfigMap":
        validate_configmap(obj, fe)
    elif kind == "DaskCluster":
        from . import operator
        operator.validate_semantics(obj, fe)


# ----- pods -----

def _check_port_name(fe, path, name):
    if len(name) > 15:
        fe.invalid(path, name, "must be no more than 15 characters")
    if not IANA_SVC.match(name):
        fe.invalid(path, name, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    elif "--" in name:
        fe.invalid(path, name, "must not contain consecutive hyphens")
    elif not re.search("[a-z]", name):
        fe.invalid(path, name, "must contain at least one letter (a-z)")
    elif name.startswith("-") or name.endswith("-"):
        fe.invalid(path, name, "must not begin or end with a hyphen")


def _check_port_num(fe, path, value):
    if not isinstance(value, int) or not 1 <= value <= 65535:
        fe.invalid(path, value, "must be between 1 and 65535, inclusive")


def _check_probe(fe, path, probe, ports_by_name):
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if len(handlers) == 0:
        fe.required(path, "must specify a handler type")
    elif len(handlers) > 1:
        fe.forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type")
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
              "failureThreshold", "terminationGracePeriodSeconds"):
        v = probe.get(f)
        if isinstance(v, int) and v < 0:
            fe.invalid(f"{path}.{f}", v, "must be greater than or equal to 0")
    for h in ("httpGet", "tcpSocket"):
        if isinstance(probe.get(h), dict):
            port = probe[h].get("port")
            pp = f"{path}.{h}.port"
            if isinstance(port, str):
                if port.isdigit():
                    fe.invalid(pp, port, "must contain at least one letter or number (a-z, 0-9)")
                else:
                    _check_port_name(fe, pp, port)
                    if port not in ports_by_name:
                        fe.invalid(pp, port, "must be a valid port name or number "
                                   "(named port not found in the container)")
            elif port is None:
                fe.required(pp, "")
            else:
                _check_port_num(fe, pp, port)
    if isinstance(probe.get("httpGet"), dict):
        sch = probe["httpGet"].get("scheme", "HTTP")
        if sch not in ("HTTP", "HTTPS"):
            fe.not_supported(f"{path}.httpGet.scheme", sch, ["HTTP", "HTTPS"])


def _check_resources(fe, path, res):
    vals = {}
    for part in ("limits", "requests"):
        for k, v in (res.get(part) or {}).items():
            p = f"{path}.{part}[{k}]"
            if "/" not in k and k not in ("cpu", "memory", "ephemeral-storage", "hugepages-2Mi",
                                          "hugepages-1Gi", "storage"):
                fe.invalid(p, k, "must be a standard resource type or fully qualified")
                continue
            try:
                q = parse_quantity(v)
            except ValueError:
                continue   # reported by the schema walker
            if q < 0:
                fe.invalid(p, v, "must be greater than or equal to 0")
            vals[(part, k)] = (q, v)
    for (part, k), (q, v) in vals.items():
        if part == "requests" and ("limits", k) in vals and q > vals[("limits", k)][0]:
            fe.invalid(f"{path}.requests", v, f"must be less than or equal to {k} limit of "
                       f"{vals[('limits', k)][1]}")


def _check_env(fe, path, env):
    for i, e in enumerate(env or []):
        p = f"{path}[{i}]"
        name = e.get("name")
        if not name:
            fe.required(f"{p}.name", "")
        elif not ENV_NAME.match(name):
            fe.invalid(f"{p}.name", name, MSG_ENV)
        vf = e.get("valueFrom")
        if vf is not None:
            sources = [s for s in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef",
                                   "fileKeyRef") if vf.get(s) is not None]
            if e.get("value"):
                fe.invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty")
            if len(sources) != 1:
                fe.invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a "
                           "time" if sources else "must specify one of: `fieldRef`, "
                           "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`")
            fr = vf.get("fieldRef")
            if isinstance(fr, dict):
                fp = fr.get("fieldPath", "")
                ok = {"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                      "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                      "status.podIPs"}
                if not fp:
                    fe.required(f"{p}.valueFrom.fieldRef.fieldPath", "")
                elif fp not in ok and not re.match(r"^metadata\.(labels|annotations)\['[^']+'\]$", fp):
                    fe.not_supported(f"{p}.valueFrom.fieldRef.fieldPath", fp, sorted(ok))
            for ref in ("configMapKeyRef", "secretKeyRef"):
                r = vf.get(ref)
                if isinstance(r, dict) and not r.get("key"):
                    fe.required(f"{p}.valueFrom.{ref}.key", "")


def _check_container(fe, path, c, volumes, init=False):
    name = c.get("name")
    if not name:
        fe.required(f"{path}.name", "")
    else:
        check_dns_label(fe, f"{path}.name", name)
    if not c.get("image"):
        fe.required(f"{path}.image", "")
    ports_by_name = {}
    for j, p in enumerate(c.get("ports") or []):
        pp = f"{path}.ports[{j}]"
        _check_port_num(fe, f"{pp}.containerPort", p.get("containerPort"))
        if p.get("hostPort") not in (None, 0):
            _check_port_num(fe, f"{pp}.hostPort", p.get("hostPort"))
        if p.get("name"):
            _check_port_name(fe, f"{pp}.name", p["name"])
            if p["name"] in ports_by_name:
                fe.duplicate(f"{pp}.name", p["name"])
            ports_by_name[p["name"]] = p
        proto = p.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            fe.not_supported(f"{pp}.protocol", proto, ["SCTP", "TCP", "UDP"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.get(probe) is not None:
            if init and c.get("restartPolicy") != "Always":
                fe.forbidden(f"{path}.{probe}", "may not be set for init containers without "
                             "restartPolicy=Always")
                continue
            _check_probe(fe, f"{path}.{probe}", c[probe], ports_by_name)
            if probe in ("livenessProbe", "startupProbe") and c[probe].get("successThreshold", 1) != 1:
                fe.invalid(f"{path}.{probe}.successThreshold", c[probe]["successThreshold"],
                           "must be 1")
    _check_resources(fe, f"{path}.resources", c.get("resources") or {})
    _check_env(fe, f"{path}.env", c.get("env"))
    mounts = set()
    for j, m in enumerate(c.get("volumeMounts") or []):
        mp = f"{path}.volumeMounts[{j}]"
        if not m.get("name"):
            fe.required(f"{mp}.name", "")
        elif m["name"] not in volumes:
            fe.add("FieldValueNotFound", f"{mp}.name", f"Not found: {json.dumps(m['name'])}")
        if not m.get("mountPath"):
            fe.required(f"{mp}.mountPath", "")
        elif m["mountPath"] in mounts:
            fe.invalid(f"{mp}.mountPath", m["mountPath"], "must be unique")
        else:
            mounts.add(m["mountPath"])
    tmp = c.get("terminationMessagePolicy", "File")
    if tmp not in ("File", "FallbackToLogsOnError"):
        fe.not_supported(f"{path}.terminationMessagePolicy", tmp, ["File", "FallbackToLogsOnError"])
    ipp = c.get("imagePullPolicy")
    if ipp is not None and ipp not in ("Always", "IfNotPresent", "Never"):
        fe.not_supported(f"{path}.imagePullPolicy", ipp, ["Always", "IfNotPresent", "Never"])
    sc = c.get("securityContext") or {}
    if sc.get("privileged") and sc.get("allowPrivilegeEscalation") is False:
        fe.invalid(f"{path}.securityContext", sc, "cannot set `allowPrivilegeEscalation` to false "
                   "and `privileged` to true")


def validate_pod_spec(spec, path, fe):
    """PodSpec rules (path is the field path of the spec, e.g. "spec")."""
    volumes = {}
    for i, v in enumerate(spec.get("volumes") or []):
        vp = f"{path}.volumes[{i}]"
        name = v.get("name")
        if not name:
            fe.required(f"{vp}.name", "")
        else:
            check_dns_label(fe, f"{vp}.name", name)
            if name in volumes:
                fe.duplicate(f"{vp}.name", name)
            volumes[name] = v
        sources = [k for k in v if k != "name"]
        if len(sources) == 0:
            fe.required(vp, "must specify a volume type")
        elif len(sources) > 1:
            fe.forbidden(f"{vp}.{sources[1]}", "may not specify more than 1 volume type")
        for src in ("secret", "configMap"):
            s = v.get(src)
            if isinstance(s, dict):
                mode = s.get("defaultMode")
                if mode is not None and not 0 <= mode <= 0o777:
                    fe.invalid(f"{vp}.{src}.defaultMode", mode, "must be a number between 0 and "
                               "0777 (octal), both inclusive")
                if src == "secret" and not s.get("secretName"):
                    fe.required(f"{vp}.secret.secretName", "")
                paths = set()
                for j, it in enumerate(s.get("items") or []):
                    ip = f"{vp}.{src}.items[{j}]"
                    if not it.get("key"):
                        fe.required(f"{ip}.key", "")
                    if not it.get("path"):
                        fe.required(f"{ip}.path", "")
                    else:
                        pth = it["path"]
                        if pth.startswith("/"):
                            fe.invalid(f"{ip}.path", pth, "must be a relative path")
                        if ".." in pth.split("/"):
                            fe.invalid(f"{ip}.path", pth, "must not contain '..'")
                        if pth in paths:
                            fe.duplicate(f"{ip}.path", pth)
                        paths.add(pth)
                    m = it.get("mode")
                    if m is not None and not 0 <= m <= 0o777:
                        fe.invalid(f"{ip}.mode", m, "must be a number between 0 and 0777 (octal), "
                                   "both inclusive")
    containers = spec.get("containers")
    if not containers:
        fe.required(f"{path}.containers", "")
    names = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            _check_container(fe, f"{path}.{key}[{i}]", c, volumes, init=(key == "initContainers"))
            if c.get("name"):
                if c["name"] in names:
                    fe.duplicate(f"{path}.{key}[{i}].name", c["name"])
                names.add(c["name"])
    rp = spec.get("restartPolicy", "Always")
    if rp not in ("Always", "OnFailure", "Never"):
        fe.not_supported(f"{path}.restartPolicy", rp, ["Always", "OnFailure", "Never"])
    dp = spec.get("dnsPolicy", "ClusterFirst")
    if dp not in ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"):
        fe.not_supported(f"{path}.dnsPolicy", dp, ["ClusterFirst", "ClusterFirstWithHostNet",
                                                   "Default", "None"])
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and not (isinstance(ads, int) and 1 <= ads <= 2 ** 53):
        fe.invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive")
    tgp = spec.get("terminationGracePeriodSeconds")
    if isinstance(tgp, int) and tgp < 0:
        fe.invalid(f"{path}.terminationGracePeriodSeconds", tgp, "must be greater than or equal to 0")
    if spec.get("serviceAccountName"):
        check_subdomain(fe, f"{path}.serviceAccountName", spec["serviceAccountName"])
    for i, t in enumerate(spec.get("tolerations") or []):
        tp = f"{path}.tolerations[{i}]"
        op = t.get("operator", "Equal")
        if op not in ("Equal", "Exists"):
            fe.not_supported(f"{tp}.operator", op, ["Equal", "Exists"])
        if op == "Exists" and t.get("value"):
            fe.invalid(f"{tp}.operator", t.get("value"), "value must be empty when `operator` is 'Exists'")
        eff = t.get("effect", "")
        if eff not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            fe.not_supported(f"{tp}.effect", eff, ["NoSchedule", "PreferNoSchedule", "NoExecute"])
        if t.get("tolerationSeconds") is not None and eff != "NoExecute":
            fe.invalid(f"{tp}.effect", eff, "effect must be 'NoExecute' when `tolerationSeconds` is set")
    ns = spec.get("nodeSelector") or {}
    check_labels(fe, f"{path}.nodeSelector", ns)


def _pod_spec_mutable_view(spec):
    s = json.loads(json.dumps(spec))
    for key in ("containers", "initContainers"):
        for c in s.get(key) or []:
            c.pop("image", None)
    s.pop("activeDeadlineSeconds", None)
    s.pop("tolerations", None)
    s.pop("terminationGracePeriodSeconds", None)
    return s


def validate_update(kind, old, new, subresource, fe, internal=False):
    if subresource == "status":
        return
    if kind == "Pod":
        o, n = old.get("spec") or {}, new.get("spec") or {}
        ov, nv = _pod_spec_mutable_view(o), _pod_spec_mutable_view(n)
        if internal and not o.get("nodeName"):
            ov.pop("nodeName", None)
            nv.pop("nodeName", None)
        if ov != nv:
            fe.forbidden("spec", "pod updates may not change fields other than "
                         "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                         "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                         "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to "
                         "be set to 1 if it was previously negative)")
        oa, na = o.get("activeDeadlineSeconds"), n.get("activeDeadlineSeconds")
        if oa is not None and (na is None or na > oa):
            fe.invalid("spec.activeDeadlineSeconds", na, "must be less than or equal to previous "
                       f"value {oa}" if na is not None else "must not update from a positive "
                       "integer to nil value")
        ot = o.get("tolerations") or []
        for t in ot:
            if t not in (n.get("tolerations") or []):
                fe.forbidden("spec.tolerations", "existing toleration can not be modified except "
                             "its tolerationSeconds")
                break
        og, ng = o.get("terminationGracePeriodSeconds"), n.get("terminationGracePeriodSeconds")
        if og != ng and not (og is not None and og < 0 and ng == 1):
            fe.forbidden("spec", "pod updates may not change fields other than "
                         "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                         "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                         "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to "
                         "be set to 1 if it was previously negative)")
    elif kind == "Service":
        o, n = old.get("spec") or {}, new.get("spec") or {}
        if o.get("clusterIP") and n.get("clusterIP") != o.get("clusterIP") and \
                n.get("type") != "ExternalName":
            fe.invalid("spec.clusterIPs[0]", n.get("clusterIP"), "may not change once set")
    elif kind in ("Secret", "ConfigMap"):
        if old.get("immutable"):
            for f in ("data", "binaryData", "stringData"):
                if (old.get(f) or {}) != (new.get(f) or {}):
                    fe.forbidden(f, "field is immutable when `immutable` is set")
            if not new.get("immutable"):
                fe.forbidden("immutable", "field is immutable when `immutable` is set")
        if kind == "Secret" and old.get("type") != new.get("type"):
            fe.invalid("type", new.get("type"), "field is immutable")
    elif kind == "Namespace":
        pass


# ----- services -----

def validate_service_spec(spec, path, fe):
    t = spec.get("type", "ClusterIP")
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if t not in types:
        fe.not_supported(f"{path}.type", t, types)
    ports = spec.get("ports") or []
    if not ports and t != "ExternalName" and spec.get("clusterIP") != "None":
        fe.required(f"{path}.ports", "")
    names = set()
    for i, p in enumerate(ports):
        pp = f"{path}.ports[{i}]"
        name = p.get("name")
        if len(ports) > 1 and not name:
            fe.required(f"{pp}.name", "")
        if name:
            check_dns_label(fe, f"{pp}.name", name)
            if name in names:
                fe.duplicate(f"{pp}.name", name)
            names.add(name)
        _check_port_num(fe, f"{pp}.port", p.get("port"))
        proto = p.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            fe.not_supported(f"{pp}.protocol", proto, ["SCTP", "TCP", "UDP"])
        tp = p.get("targetPort")
        if isinstance(tp, str):
            if tp.isdigit():
                pass
            else:
                _check_port_name(fe, f"{pp}.targetPort", tp)
        elif tp is not None:
            _check_port_num(fe, f"{pp}.targetPort", tp)
        np = p.get("nodePort")
        if np:
            if t not in ("NodePort", "LoadBalancer"):
                fe.forbidden(f"{pp}.nodePort", "may not be used when `type` is 'ClusterIP'")
            elif not 30000 <= np <= 32767:
                fe.invalid(f"{pp}.nodePort", np, "provided port is not in the valid range. The "
                           "range of valid ports is 30000-32767")
    sa = spec.get("sessionAffinity", "None")
    if sa not in ("ClientIP", "None"):
        fe.not_supported(f"{path}.sessionAffinity", sa, ["ClientIP", "None"])
    ranges = spec.get("loadBalancerSourceRanges")
    if ranges:
        if t != "LoadBalancer":
            fe.forbidden(f"{path}.loadBalancerSourceRanges", "may only be used when `type` is "
                         "'LoadBalancer'")
        for i, r in enumerate(ranges):
            try:
                ipaddress.ip_network(r.strip(), strict=False)
                if "/" not in r:
                    raise ValueError(r)
            except ValueError:
                fe.invalid(f"{path}.loadBalancerSourceRanges[{i}]", r,
                           "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 ")
    check_labels(fe, f"{path}.selector", spec.get("selector"))
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            fe.invalid(f"{path}.clusterIPs[0]", ip, "must be a valid IP address, (e.g. 10.9.8.7 "
                       "or 2001:db8::ffff)")
    for f, ok in (("internalTrafficPolicy", ["Cluster", "Local"]),
                  ("externalTrafficPolicy", ["Cluster", "Local"])):
        v = spec.get(f)
        if v is not None and v not in ok:
            fe.not_supported(f"{path}.{f}", v, ok)


# ----- secrets / configmaps -----

def _check_keys(fe, field, data):
    for k in (data or {}):
        if not CONFIG_KEY.match(k) or len(k) > 253:
            fe.invalid(f"{field}[{k}]", k, MSG_KEY)
        elif k in (".", "..") or k.startswith(".."):
            fe.invalid(f"{field}[{k}]", k, "must not be '.' or '..' nor start with '..'")


def validate_secret(obj, fe):
    data = obj.get("data") or {}
    _check_keys(fe, "data", data)
    total = 0
    for k, v in data.items():
        try:
            total += len(base64.b64decode(v, validate=True))
        except (ValueError, TypeError):
            pass   # schema's byte format reports it
    if total > 1024 * 1024:
        fe.too_long("data", 1024 * 1024)
    if obj.get("type") == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                fe.required(f"data[{k}]", "")


def validate_configmap(obj, fe):
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    _check_keys(fe, "data", data)
    _check_keys(fe, "binaryData", binary)
    for k in set(data) & set(binary):
        fe.invalid("data", k, "duplicate of key present in binaryData")
    total = sum(len(k) + len(v) for k, v in data.items()) + sum(len(v) for v in binary.values())
    if total > 1024 * 1024:
        fe.too_long("", 1024 * 1024)
