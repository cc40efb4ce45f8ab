"""Small helpers shared by the API tests (no fixtures: those live in tests/conftest.py)."""
from __future__ import annotations

import re
from contextlib import contextmanager

from sqlalchemy import event

from athena.auth import hash_token
from athena.extensions import db
from athena.models import ApiToken
from athena.timeutil import utcnow
from tests.factories import token_for

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def revoked_headers(user) -> dict[str, str]:
    """Headers with a token that was valid and has been revoked."""
    clear = token_for(user)
    db.session.execute(db.update(ApiToken).where(ApiToken.token_hash == hash_token(clear)).values(revoked_at=utcnow()))
    db.session.commit()
    return {"Authorization": f"Bearer {clear}"}


@contextmanager
def count_statements():
    """Count the SQL statements sent to the database inside the block: ``with ... as seen: len(seen)``."""
    seen: list[str] = []

    def _record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", _record)


def assert_json_error(response, status: int) -> dict:
    """The response is a JSON ``{"message", "errors"?}`` error with ``status``."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.is_json, response.get_data(as_text=True)[:500]
    body = response.json
    assert isinstance(body.get("message"), str) and body["message"]
    assert set(body) <= {"message", "errors"}
    if "errors" in body:
        assert isinstance(body["errors"], dict)
    return body
