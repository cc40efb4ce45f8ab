"""Laravel-style pagination: ``{"data": [...], "meta": {...}, "links": {...}}`` for a SQLAlchemy
select, the ``page``/``per_page`` arguments and the page envelope's schema."""
from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from flask import request
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from athena.extensions import db

_page_envelopes: dict[str, type[Schema]] = {}


class PaginationMetaSchema(Schema):
    current_page = fields.Integer(required=True)
    # ``from``/``to`` are Python keywords, hence data_key.
    from_ = fields.Integer(data_key="from", allow_none=True)
    last_page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    to = fields.Integer(allow_none=True)
    total = fields.Integer(required=True)
    path = fields.String(required=True)


class PaginationLinksSchema(Schema):
    first = fields.String(required=True)
    last = fields.String(required=True)
    prev = fields.String(allow_none=True)
    next = fields.String(allow_none=True)


def page_envelope(schema: type[Schema]) -> type[Schema]:
    if schema.__name__ not in _page_envelopes:
        name = schema.__name__.removesuffix("Schema") + "PageResponse"
        _page_envelopes[schema.__name__] = Schema.from_dict(
            {
                "data": fields.List(fields.Nested(schema), required=True),
                "meta": fields.Nested(PaginationMetaSchema, required=True),
                "links": fields.Nested(PaginationLinksSchema, required=True),
            },
            name=name,
        )
    return _page_envelopes[schema.__name__]


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


def _page_url(page: int) -> str:
    args = request.args.to_dict(flat=False)
    args["page"] = [str(page)]
    return f"{request.base_url}?{urlencode(args, doseq=True)}"


def paginate(query, page: int, per_page: int, *, total: int | None = None, key=None,
             rows=None) -> dict[str, Any]:
    """Run a SQLAlchemy select for one page; returns ``{"data", "meta", "links"}``.

    ``query`` is a flask-sqlalchemy/SQLAlchemy ``Select``; the count runs on the same filters
    (``SELECT count(*) FROM (<query>)``: the databases drop the unused columns, so an index that
    covers the filters answers it alone).

    With ``key`` (the primary key column of the one entity ``query`` selects; no joins that repeat
    rows) and ``rows`` (a select of that entity, with its loader options, and no filters), the page
    is a deferred join: its keys first, from ``query`` with ``LIMIT``/``OFFSET`` (an index range;
    the rows skipped are not read), then ``rows`` by those keys, in the page's order. Deep pages
    then cost index entries, not table rows. ``rows`` carries no filters on purpose: with them,
    a planner without statistics (SQLite) walks the filter's index instead of the 20 keys.
    """
    if total is None:
        count_query = select(func.count()).select_from(query.order_by(None).subquery())
        total = db.session.execute(count_query).scalar_one()
    start = (page - 1) * per_page
    if key is None:
        items = list(db.session.execute(query.limit(per_page).offset(start)).unique().scalars())
    else:
        keys = list(db.session.execute(query.with_only_columns(key).limit(per_page).offset(start)).scalars())
        position = {value: index for index, value in enumerate(keys)}
        items = sorted(db.session.execute(rows.where(key.in_(keys))).unique().scalars(),
                       key=lambda item: position[getattr(item, key.key)]) if keys else []
    last_page = max(1, math.ceil(total / per_page))
    return {
        "data": items,
        "meta": {
            "current_page": page,
            "from_": start + 1 if items else None,
            "last_page": last_page,
            "per_page": per_page,
            "to": start + len(items) if items else None,
            "total": total,
            "path": request.base_url,
        },
        "links": {
            "first": _page_url(1),
            "last": _page_url(last_page),
            "prev": _page_url(page - 1) if page > 1 else None,
            "next": _page_url(page + 1) if page < last_page else None,
        },
    }
