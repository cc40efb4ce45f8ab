"""The caller's permission before the body is validated (providers and accounts): a class-level
view decorator, so it runs after the authentication and before flask-smorest parses the body."""
from __future__ import annotations

import functools
from typing import Any, Callable

from flask import request

from athena.auth import current_user
from athena.services.llm_accounts import check_write_access


def write_access_first(load: Callable[..., Any] | None = None) -> Callable:
    """For a write (not GET/HEAD/OPTIONS): ``load(user, uuid, write=True)`` for an item route
    (404/403 first), or, on a collection, the body's ``workspace_uuid`` checked for write access."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                if load is not None and "uuid" in kwargs:
                    load(current_user(), kwargs["uuid"], write=True)
                elif load is None:
                    body = request.get_json(silent=True) if request.is_json else None
                    if isinstance(body, dict):
                        check_write_access(current_user(), body.get("workspace_uuid"))
            return view(*args, **kwargs)

        return wrapper

    return decorator
