"""`ServingError`: a request failure with TF Serving's HTTP status and a client-safe message.

TF Serving turns an `absl::Status` into HTTP with `ToHTTPStatusCode` (`model_servers/http_server.cc`):
INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE -> 400, NOT_FOUND -> 404, RESOURCE_EXHAUSTED
-> 429, UNIMPLEMENTED -> 501, UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504. We add 408 (body not
received in time) and 413 (body over the size limit), which TF Serving has no equivalent for.
`code_name` maps back; a `ServingError` also carries TF Serving's error code name itself, for the
metrics' `status` label and the gRPC status, because one HTTP status stands for several codes
(TF Serving's gRPC API answers FAILED_PRECONDITION where its REST API answers 400).
"""

INVALID_ARGUMENT = 400
NOT_FOUND = 404
REQUEST_TIMEOUT = 408
PAYLOAD_TOO_LARGE = 413
UNIMPLEMENTED = 501
UNAVAILABLE = 503
DEADLINE_EXCEEDED = 504


# HTTP status -> TF Serving's error code name; 408 and 413 get the nearest code.
_CODE_NAMES = {200: "OK", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
               413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def code_name(http_status):
    """TF Serving's error code name (`OK`, `INVALID_ARGUMENT`, ...) of an HTTP status we answer."""
    return _CODE_NAMES.get(http_status, "UNKNOWN")


class ServingError(Exception):
    """A request error: `{"error": message}` with HTTP `status` over REST, gRPC status `code` (TF
    Serving's error code name; by default the one of `status`) over gRPC."""

    def __init__(self, message, status=INVALID_ARGUMENT, code=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or code_name(status)


def describe_exception(error, limit=400):
    """A one-line, traceback-free description of an unexpected error, for a 400 body or a log."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[:limit] + "..."
