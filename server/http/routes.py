"""The route table: a request path -> the endpoint that serves it and its path parameters.

Paths are split on "/" and matched by shape, not by regular expressions: one dict lookup for
the fixed paths, a few comparisons for the model paths.
"""

from __future__ import annotations

from server.http.status import HttpError

# (method, endpoint) per fixed path.
_FIXED: dict[tuple[str, ...], dict[str, str]] = {
    (): {"GET": "server_metadata"},
    ("health", "live"): {"GET": "live"},
    ("health", "ready"): {"GET": "ready"},
    ("models", "stats"): {"GET": "statistics"},
    ("repository", "index"): {"POST": "repository_index"},
    ("systemsharedmemory", "status"): {"GET": "shm_status"},
    ("systemsharedmemory", "unregister"): {"POST": "shm_unregister"},
    ("cudasharedmemory", "status"): {"GET": "unimplemented"},
    ("cudasharedmemory", "unregister"): {"POST": "unimplemented"},
    ("logging",): {"GET": "log_settings", "POST": "update_log_settings"},
    ("trace", "setting"): {"GET": "unimplemented", "POST": "unimplemented"},
}
_MODEL: dict[str, dict[str, str]] = {
    "": {"GET": "model_metadata"},
    "ready": {"GET": "model_ready"},
    "config": {"GET": "model_config"},
    "stats": {"GET": "statistics"},
    "infer": {"POST": "infer"},
}
_REPOSITORY_MODEL: dict[str, dict[str, str]] = {
    "load": {"POST": "load"},
    "unload": {"POST": "unload"},
}
_REGION: dict[str, dict[str, str]] = {
    "status": {"GET": "shm_status"},
    "register": {"POST": "shm_register"},
    "unregister": {"POST": "shm_unregister"},
}


def route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The endpoint name and path parameters; HttpError 404 or 405 when nothing matches."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] or parts[1] != "v2":
        raise HttpError(404, f"no such path: {path}")
    rest = tuple(parts[2:])
    if rest and not rest[-1]:  # a trailing slash
        rest = rest[:-1]
    params: dict[str, str] = {}
    methods = _FIXED.get(rest)
    if methods is None:
        methods = _parametrised(rest, params)
    if methods is None:
        raise HttpError(404, f"no such path: {path}")
    endpoint = methods.get(method)
    if endpoint is None:
        allowed = ", ".join(sorted(methods))
        raise HttpError(405, f"{method} is not allowed on {path}; allowed: {allowed}")
    return endpoint, params


def _parametrised(rest: tuple[str, ...], params: dict[str, str]) -> dict[str, str] | None:
    n = len(rest)
    if n >= 2 and rest[0] == "models" and rest[1]:
        params["model"] = rest[1]
        tail = rest[2:]
        if len(tail) >= 2 and tail[0] == "versions" and tail[1]:
            params["version"] = tail[1]
            tail = tail[2:]
        if len(tail) > 1:
            return None
        return _MODEL.get(tail[0] if tail else "")
    if n == 4 and rest[0] == "repository" and rest[1] == "models" and rest[2]:
        params["model"] = rest[2]
        return _REPOSITORY_MODEL.get(rest[3])
    if n == 4 and rest[0] == "systemsharedmemory" and rest[1] == "region" and rest[2]:
        params["region"] = rest[2]
        return _REGION.get(rest[3])
    if n >= 1 and rest[0] == "cudasharedmemory":
        return {"GET": "unimplemented", "POST": "unimplemented"}
    return None
