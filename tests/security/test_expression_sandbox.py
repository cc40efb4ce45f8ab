"""Issue 6 item 9: server-side template injection corpus against the expression sandbox.

Every payload must either be refused (ExpressionError) or evaluate to something harmless:
no Python internals, no configuration, no environment, no file access; evaluation is bounded."""
from __future__ import annotations

import os
import threading

import pytest

from athena.engine import ExpressionError, evaluate

SCOPE = {"trigger": {"body": {"name": "x"}}, "nodes": {}, "variables": {"api_base": "https://example.test"},
         "execution": {"uuid": "u"}}

PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.environ }}",
    "{{ request.application.__globals__ }}",
    "{{ url_for.__globals__ }}",
    "{{ get_flashed_messages.__globals__ }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ trigger.__class__.__init__.__globals__ }}",
    "{{ trigger.body.__class__.__base__.__subclasses__() }}",
    "{{ variables|attr('__class__') }}",
    "{{ variables|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ (trigger|attr('__class__')|attr('__mro__'))[1] }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set x = ''.__class__ %}{{ x }}",
    "{{ range(10**12)|list }}",
    "{{ 'a' * 10**10 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ ''.format.__globals__ }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '%s'.__mod__.__self__.__class__ }}",
    "{{ trigger.body.update({'name': 'pwned'}) }}",
    "{{ import('os') }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{{ open('/etc/passwd').read() }}",
]

SECRETS = ("SECRET", "root:", "subclasses", "<class", "__globals__", "environ", "popen")


def _evaluate_bounded(source: str):
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = evaluate(source, SCOPE)
        except ExpressionError as exc:
            outcome["error"] = exc
        except Exception as exc:  # noqa: BLE001 - anything else is a sandbox failure
            outcome["crash"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)  # a hang detector, not a timing threshold
    assert not thread.is_alive(), f"evaluation hung: {source}"
    return outcome


def test_corpus_has_at_least_twenty_payloads():
    assert len(PAYLOADS) >= 20


@pytest.mark.parametrize("source", PAYLOADS)
def test_no_escape_no_hang(source: str) -> None:
    outcome = _evaluate_bounded(source)
    assert "crash" not in outcome, f"{source}: {outcome.get('crash')!r}"
    if "error" in outcome:
        assert "failed" in str(outcome["error"])
        return
    rendered = repr(outcome["value"])
    assert len(rendered) < 100_000
    for marker in SECRETS:
        assert marker not in rendered, f"{source} leaked {marker!r}: {rendered[:200]}"
    assert os.environ.get("PATH", "\0") not in rendered
    assert SCOPE["trigger"]["body"]["name"] == "x", "the scope was mutated"
