"""Google's error shape, as every handler raises it.

Owns `gerr(http, reason, message, ...)` → a simkit ApiError whose body is
`{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status", "details"?}}`
(Compute's legacy `errors[]` plus the canonical `status` that google-cloud-rust reads the code
from), `esf(...)` for Secret Manager/IAM (no `errors[]`, like those APIs answer), the status
names per HTTP code, and `not_found(link)` in Compute's wording.
"""

from simkit import ApiError

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "ALREADY_EXISTS",
          412: "FAILED_PRECONDITION", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT",
          429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
          502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
REASON = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound",
          405: "methodNotAllowed", 409: "alreadyExists", 412: "conditionNotMet",
          429: "rateLimitExceeded", 500: "backendError", 501: "notImplemented",
          502: "backendError", 503: "backendError", 504: "backendError"}


def body(http, reason, message, status=None, domain="global", details=None, errors=True,
         extra=None):
    err = {"code": http, "message": message}
    if errors:
        e = {"message": message, "domain": domain, "reason": reason}
        e.update(extra or {})
        err["errors"] = [e]
    err["status"] = status or STATUS.get(http, "UNKNOWN")
    if details:
        err["details"] = details
    return {"error": err}


def gerr(http, reason, message, status=None, domain="global", details=None, headers=None,
         extra=None):
    return ApiError(http, reason, message, headers=headers,
                    body=body(http, reason, message, status, domain, details, extra=extra))


def esf(http, message, status=None, details=None):
    """Secret Manager / IAM style (no `errors[]`)."""
    return ApiError(http, (status or STATUS.get(http, "UNKNOWN")).lower(), message,
                    body=body(http, "", message, status, errors=False, details=details))


def not_found(link):
    return gerr(404, "notFound", f"The resource '{link}' was not found")


def invalid(field, value, why):
    return gerr(400, "invalid", f"Invalid value for field '{field}': '{value}'. {why}")


def error_info(reason, domain, metadata=None):
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
            "domain": domain, "metadata": metadata or {}}
