"""The task's IAM roles, and fetching its secrets the way the ECS agent does.

On Fargate the agent assumes the task *execution role* to write the awslogs stream and to
read `secrets` (SSM GetParameters WithDecryption), and Fargate assumes the *task role* for
the application.  So a task whose roles are missing, not trusted by ecs-tasks.amazonaws.com,
or lacking those permissions fails to start on AWS; here it is refused.  moto stores IAM but
enforces nothing, so this module reads the role's trust and permission policies itself.

Policy evaluation is deliberately small: Allow/Deny statements with Action/NotAction and
Resource/NotResource, `*` and `?` wildcards.  Conditions are not evaluated: such statements
count as they would without the condition (noted), which can only make the agent lenient.
"""

import json
import re
import urllib.parse

from vmboot.common import Refusal

ECS_TASKS = "ecs-tasks.amazonaws.com"
DEFAULT_SSM_KEY = "alias/aws/ssm"
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>[0-9]+):role/(?:.*/)?"
                         r"(?P<name>[^/]+)$")


def as_document(doc):
    """IAM documents come back as dicts from boto3, or as URL-encoded JSON strings."""
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, str):
        try:
            return json.loads(urllib.parse.unquote(doc))
        except ValueError:
            return {"unparsed": doc}
    return {}


def _listify(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wild(pattern, value, ignore_case):
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, value, re.IGNORECASE if ignore_case else 0) is not None


def _statements(doc):
    return [s for s in _listify(as_document(doc).get("Statement")) if isinstance(s, dict)]


def _applies(stmt, action, resource):
    if "Action" in stmt:
        ok = any(_wild(a, action, True) for a in _listify(stmt["Action"]))
    else:
        ok = not any(_wild(a, action, True) for a in _listify(stmt.get("NotAction")))
    if not ok:
        return False
    if "Resource" in stmt:
        return any(_wild(r, resource, False) for r in _listify(stmt["Resource"]))
    return not any(_wild(r, resource, False) for r in _listify(stmt.get("NotResource")))


def evaluate(documents, action, resources):
    """Whether the documents allow `action` on any of `resources` (alternative ARN spellings
    of one resource) without an explicit Deny.  -> (allowed, notes)."""
    allowed, denied, notes = False, False, []
    for source, doc in documents:
        for stmt in _statements(doc):
            if not any(_applies(stmt, action, r) for r in resources):
                continue
            if stmt.get("Condition"):
                notes.append(f"{source}: a Condition on {action} was not evaluated")
            if stmt.get("Effect") == "Deny":
                denied = True
            elif stmt.get("Effect") == "Allow":
                allowed = True
    return allowed and not denied, notes


class Role:
    def __init__(self, arn, name, trust, documents):
        self.arn = arn
        self.name = name
        self.trust = trust
        self.documents = documents  # [(source, document)]


def load_role(iam, arn, what):
    m = ROLE_ARN_RE.match(arn or "")
    if not m:
        raise Refusal(f"{what} {arn!r} is not an IAM role ARN")
    try:
        role = iam.get_role(RoleName=m.group("name"))["Role"]
    except iam.exceptions.NoSuchEntityException:
        raise Refusal(f"{what} {arn} does not exist in IAM, so ECS could not assume it")
    if role.get("Arn") != arn:
        raise Refusal(f"{what} {arn} does not match the role's ARN {role.get('Arn')}")
    trust = as_document(role.get("AssumeRolePolicyDocument"))
    trusted = any(
        s.get("Effect") == "Allow"
        and ECS_TASKS in _listify((s.get("Principal") or {}).get("Service")
                                  if isinstance(s.get("Principal"), dict) else None)
        and any(_wild(a, "sts:AssumeRole", True) for a in _listify(s.get("Action")))
        for s in _statements(trust)
    )
    if not trusted:
        raise Refusal(f"{what} {arn}: its trust policy does not let {ECS_TASKS} assume it")
    documents = []
    name = role["RoleName"]
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for p in page.get("AttachedPolicies", []):
            policy = iam.get_policy(PolicyArn=p["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=p["PolicyArn"],
                                             VersionId=policy["DefaultVersionId"])
            documents.append((p["PolicyArn"], version["PolicyVersion"]["Document"]))
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        for pname in page.get("PolicyNames", []):
            doc = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
            documents.append((f"inline {pname}", doc))
    return Role(arn, name, trust, documents)


def require(role, action, resources, notes):
    ok, why = evaluate(role.documents, action, resources)
    notes.extend(why)
    if not ok:
        raise Refusal(f"execution role {role.arn} does not allow {action} on {resources[0]}"
                      f" (policies: {[s for s, _ in role.documents]}); the task would fail to"
                      " start on ECS")


def parameter_arn(spec, name):
    return f"arn:aws:ssm:{spec.region}:{spec.account}:parameter/{name.lstrip('/')}"


def log_arns(spec):
    group = (f"arn:aws:logs:{spec.region}:{spec.account}:log-group:{spec.log['group']}")
    stream = f"{group}:log-stream:{spec.log['stream']}"
    return group, stream


def check_roles(iam, spec, notes):
    """Refuse unless the roles exist, trust ECS tasks, and the execution role may do what the
    ECS agent does with it.  -> {"execution_role", "task_role"} as checked."""
    checked = {"execution_role": None, "task_role": None}
    if spec.task_role_arn:
        load_role(iam, spec.task_role_arn, "taskRoleArn")
        checked["task_role"] = spec.task_role_arn
    if not spec.execution_role_arn:
        return checked
    role = load_role(iam, spec.execution_role_arn, "executionRoleArn")
    checked["execution_role"] = spec.execution_role_arn
    if spec.log:
        group, stream = log_arns(spec)
        if spec.log["create_group"]:
            require(role, "logs:CreateLogGroup", [group, f"{group}:*"], notes)
        require(role, "logs:CreateLogStream", [stream, group, f"{group}:*"], notes)
        require(role, "logs:PutLogEvents", [stream], notes)
    for s in spec.secrets:
        require(role, "ssm:GetParameters", [parameter_arn(spec, s.parameter_name)], notes)
    return checked


def fetch_secrets(ssm, spec):
    """GetParameters WithDecryption, as the ECS agent does -> ({env name: value}, info)."""
    names = sorted({s.parameter_name for s in spec.secrets})
    values, info = {}, {}
    for i in range(0, len(names), 10):
        chunk = names[i:i + 10]
        resp = ssm.get_parameters(Names=chunk, WithDecryption=True)
        if resp.get("InvalidParameters"):
            raise Refusal(f"secrets: SSM parameters {resp['InvalidParameters']} do not exist"
                          " (ResourceInitializationError: unable to pull secrets)")
        for p in resp.get("Parameters", []):
            values[p["Name"]] = p["Value"]
            info[p["Name"]] = {"type": p.get("Type"), "version": p.get("Version")}
    missing = [n for n in names if n not in values]
    if missing:
        raise Refusal(f"secrets: GetParameters returned no value for {missing}")
    secure = [n for n in names if info[n]["type"] == "SecureString"]
    if secure:
        described = {}
        for i in range(0, len(secure), 50):
            resp = ssm.describe_parameters(ParameterFilters=[
                {"Key": "Name", "Option": "Equals", "Values": secure[i:i + 50]}])
            described.update({p["Name"]: p for p in resp.get("Parameters", [])})
        for n in secure:
            key = described.get(n, {}).get("KeyId", DEFAULT_SSM_KEY)
            info[n]["key_id"] = key
            if key not in (DEFAULT_SSM_KEY, f"kms:{DEFAULT_SSM_KEY}"):
                raise Refusal(f"secret {n} is encrypted with {key}; the execution role would"
                              " need kms:Decrypt on it, which the agent does not emulate")
    return {s.env_name: values[s.parameter_name] for s in spec.secrets}, info
