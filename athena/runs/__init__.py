"""The run layer, between the pure engine (:mod:`athena.engine`) and the services.

- :mod:`athena.runs.driver`: the one loop that consumes the engine's typed events and hands them
  to a store (checkpoints and the run's end) and an event sink.
- :mod:`athena.runs.sinks`: where events go (the Redis event log, or the inline batch's buffer).
- :mod:`athena.runs.lifecycle`: status transitions and the closing pair, in one place.
- :mod:`athena.runs.wire`: the events' one schema (docs/events.md) and the engine-to-wire mapping.
- :mod:`athena.runs.eventlog`: the replayable log (Redis streams) behind the sinks, the
  WebSocket, the webhook waiter and the ``watch`` CLI.

What a run of a workflow execution stores, and what happens around its suspensions, is the
services' (:mod:`athena.services.execution_run`, :mod:`athena.services.inline_run`)."""
