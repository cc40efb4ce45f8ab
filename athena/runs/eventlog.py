"""The replayable event log: one Redis Stream per execution and one per workspace.

Every event gets a ``seq`` strictly increasing per execution (and per workspace channel),
assigned atomically in Redis together with the append, so concurrent writers (worker, API)
never interleave out of order. Stream entry ids are ``<seq>-0``: reading "after seq N" is
``XRANGE (N-0 +`` / ``XREAD`` from ``N-0``, which is gap-free by construction; pub/sub is not
needed for the relay. The append also returns whether a stop was requested, so the runner
learns of a stop without an extra round trip."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from redis import Redis

from athena.runs.wire import WORKSPACE_EVENTS, encode
from athena.timeutil import iso_now

PREFIX = "athena"

# ARGV: maxlen, ttl, claim_from, then (event JSON, "1" if it also goes to the workspace) pairs.
# With claim_from > 0, the events from that (1-based) one on are appended only if this call
# sets the claim key KEYS[6] (the closing pair: once per execution, whoever sends it first).
_APPEND = """
local maxlen, ttl, claim_from = ARGV[1], ARGV[2], tonumber(ARGV[3])
local claimed = 1
if claim_from > 0 and not redis.call('SET', KEYS[6], '1', 'NX', 'EX', ttl) then
  claimed = 0
end
local seq, wseq = 0, 0
for i = 4, #ARGV, 2 do
  if claimed == 1 or (i - 2) / 2 < claim_from then
    seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, seq .. '-0', 'e', ARGV[i])
    if ARGV[i + 1] == '1' then
      wseq = redis.call('INCR', KEYS[3])
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, wseq .. '-0', 'e', ARGV[i], 'x', seq)
    end
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
if wseq > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('EXPIRE', KEYS[4], ttl)
end
local stop = redis.call('EXISTS', KEYS[5])
return {seq, wseq, stop, claimed}
"""


def stream_key(execution_uuid: str) -> str:
    return f"{PREFIX}:exec:{execution_uuid}:events"


def seq_key(execution_uuid: str) -> str:
    return f"{PREFIX}:exec:{execution_uuid}:seq"


def workspace_stream_key(workspace_uuid: str) -> str:
    return f"{PREFIX}:ws:{workspace_uuid}:events"


def workspace_seq_key(workspace_uuid: str) -> str:
    return f"{PREFIX}:ws:{workspace_uuid}:seq"


def final_events_key(execution_uuid: str) -> str:
    """Set once the closing pair of the execution was claimed (see :func:`athena.runs.lifecycle.close`)."""
    return f"{PREFIX}:exec:{execution_uuid}:final"


def stop_key(execution_uuid: str) -> str:
    return f"{PREFIX}:exec:{execution_uuid}:stop"


def control_channel(execution_uuid: str) -> str:
    return f"{PREFIX}:exec:{execution_uuid}:control"


@dataclass
class AppendResult:
    seq: int
    workspace_seq: int
    stop_requested: bool
    claimed: bool = True  # with ``claim_from``: whether the claimed events were appended


class EventLog:
    def __init__(self, redis: Redis, maxlen: int = 10_000, ttl_seconds: int = 7 * 24 * 3600):
        self.redis = redis
        self.maxlen = maxlen
        self.ttl = ttl_seconds
        self._append = redis.register_script(_APPEND)

    def append(self, execution_uuid: str, workspace_uuid: str, event: str, *, pipeline: Any = None,
               **fields: Any) -> AppendResult | None:
        return self.append_many(execution_uuid, workspace_uuid, [(event, fields)], pipeline=pipeline)

    def append_many(self, execution_uuid: str, workspace_uuid: str,
                    events: list[tuple[str, dict[str, Any]]], pipeline: Any = None,
                    claim_from: int = 0) -> AppendResult | None:
        """Append several events in order in one round trip; the result is the last one's.
        With a ``pipeline``, the append is queued on it (it runs, and answers, with the pipeline).
        With ``claim_from`` (1-based), the events from that one on are appended only if this
        call is the first to claim the execution's closing pair (``AppendResult.claimed``)."""
        args: list[Any] = [self.maxlen, self.ttl, claim_from]
        ts = iso_now()
        for event, fields in events:
            args += [encode(event, fields, ts=ts, execution_uuid=execution_uuid, workspace_uuid=workspace_uuid),
                     "1" if event in WORKSPACE_EVENTS else "0"]
        keys = [seq_key(execution_uuid), stream_key(execution_uuid), workspace_seq_key(workspace_uuid),
                workspace_stream_key(workspace_uuid), stop_key(execution_uuid), final_events_key(execution_uuid)]
        if pipeline is not None:
            # EVAL, not EVALSHA: a pipeline would first ask SCRIPT EXISTS (one more round trip);
            # Redis caches the compiled script by its hash either way.
            pipeline.eval(_APPEND, len(keys), *keys, *args)
            return None
        seq, wseq, stop, claimed = self._append(keys=keys, args=args)
        return AppendResult(int(seq), int(wseq), bool(stop), bool(claimed))

    @staticmethod
    def _decode(entries, workspace: bool = False, want: Callable[[bytes], bool] | None = None) -> list[dict]:
        """Entries as events with their ``seq``; with ``want``, only the entries whose raw JSON
        (as :func:`athena.runs.wire.encode` wrote it) it accepts are decoded (the others come back
        as ``{"seq": n, "event": None}``)."""
        events = []
        for entry_id, fields in entries:
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields[b"e"] if b"e" in fields else fields["e"]
            seq = int(entry_id.split("-", 1)[0])
            if want is not None and not want(raw if isinstance(raw, bytes) else raw.encode()):
                events.append({"seq": seq, "event": None})
                continue
            event = json.loads(raw)
            if workspace:
                event["seq"] = seq
                event["execution_seq"] = int(fields.get(b"x", fields.get("x", 0)))
            else:
                event["seq"] = seq
            events.append(event)
        return events

    def last_seq(self, key: str) -> int:
        entries = self.redis.xrevrange(key, count=1)
        return int(entries[0][0].decode().split("-", 1)[0]) if entries else 0

    def read_after(self, key: str, after_seq: int, count: int = 1000, workspace: bool = False,
                   want: Callable[[bytes], bool] | None = None) -> list[dict]:
        return self._decode(self.redis.xrange(key, min=f"({after_seq}-0", max="+", count=count), workspace, want)

    def wait_after(self, key: str, after_seq: int, block_ms: int, workspace: bool = False,
                   want: Callable[[bytes], bool] | None = None) -> list[dict]:
        found = self.redis.xread({key: f"{after_seq}-0"}, count=1000, block=block_ms)
        return self._decode(found[0][1], workspace, want) if found else []

    def follow(self, key: str, after_seq: int, timeout: float, workspace: bool = False,
               want: Callable[[bytes], bool] | None = None) -> Iterator[dict]:
        """Every event after ``after_seq``: the replay, then live ones, until ``timeout`` seconds.
        With ``want``, only the events whose raw JSON it accepts (see :meth:`_decode`)."""
        deadline = time.monotonic() + timeout
        batch = self.read_after(key, after_seq, workspace=workspace, want=want)  # the replay
        while True:
            for event in batch:
                after_seq = event["seq"]
                if event["event"] is not None:
                    yield event
            remaining = deadline - time.monotonic()
            if remaining <= 0:  # no more waiting: only what is already there
                batch = self.read_after(key, after_seq, workspace=workspace, want=want)
                if not batch:
                    return
                continue
            # XREAD answers at once when newer events are there, else when one arrives.
            batch = self.wait_after(key, after_seq, max(1, int(min(remaining, 1.0) * 1000)), workspace, want)

    # Stop signals
    def request_stop(self, execution_uuid: str) -> None:
        pipe = self.redis.pipeline()
        pipe.set(stop_key(execution_uuid), "1", ex=self.ttl)
        pipe.publish(control_channel(execution_uuid), "stop")
        pipe.execute()

    def stop_requested(self, execution_uuid: str) -> bool:
        return bool(self.redis.exists(stop_key(execution_uuid)))


def event_log_for_app(app=None) -> EventLog:
    from flask import current_app

    from athena.redis_client import get_redis

    app = app or current_app._get_current_object()
    cached = app.extensions.get("athena_eventlog")
    if cached is None:
        cached = EventLog(get_redis(app), app.config["EVENT_LOG_MAXLEN"], app.config["EVENT_LOG_TTL_SECONDS"])
        app.extensions["athena_eventlog"] = cached
    return cached
