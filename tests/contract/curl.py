"""Replaying the documented ``curl`` examples byte for byte.

The reference pages show requests as ``curl --location [-g] --request M 'URL' --header '...'
--form '...'``. :func:`render` replaces the documented base URL, the ``<token>`` placeholder and
the ``{{name}}`` placeholders in the command text and keeps every other byte; :func:`parse` turns
the command into a :class:`CurlRequest` with curl's own rules for the parts the docs use:

* ``--header 'Name;'`` sends ``Name`` with an EMPTY value (curl's syntax for that), ``--header
  'Name:'`` removes the header, ``--header 'Name: value'`` sends ``value``;
* ``--form 'name=""'`` sends an empty multipart field, ``--form 'name="text"'`` sends ``text``
  (curl strips the double quotes and unescapes ``\\"`` and ``\\\\`` inside them);
* ``-g`` (globbing off) means ``{}``/``[]`` in the URL are sent as they are;
* ``--location`` follows redirects.

:func:`send` sends it with ``http.client`` (the exact path and query bytes, headers in the
documented order, a multipart body built as curl builds it); :func:`run_curl` hands the same
rendered command to the real ``curl`` binary when there is one (a second replay; the tests never
depend on it)."""
from __future__ import annotations

import http.client
import json
import shlex
import shutil
import subprocess
import uuid as uuid_lib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

DOCUMENTED_BASE = "https://localhost"
TOKEN_PLACEHOLDER = "<token>"
REDIRECTS = (301, 302, 303, 307, 308)


def render(command: str, base_url: str, token: str, placeholders: dict[str, str] | None = None) -> str:
    """``command`` with the base URL, the token and the ``{{name}}`` placeholders replaced."""
    assert command.count(DOCUMENTED_BASE) == 1, "one documented URL per example"
    text = command.replace(DOCUMENTED_BASE, base_url.rstrip("/")).replace(TOKEN_PLACEHOLDER, token)
    for name, value in (placeholders or {}).items():
        text = text.replace("{{" + name + "}}", value)
    assert "{{" not in text and "}}" not in text, f"a placeholder was left: {text}"
    return text


@dataclass
class CurlRequest:
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] = field(default_factory=list)
    follow: bool = False
    globbing: bool = True


def _form_value(raw: str) -> str:
    """The value of ``--form 'name=<raw>'`` as curl reads it (only what the docs use)."""
    if raw.startswith(("@", "<")):
        raise ValueError(f"file parts are not supported: {raw!r}")
    if not raw.startswith('"'):
        if ";" in raw:
            raise ValueError(f"form part options are not supported: {raw!r}")
        return raw
    out, i = [], 1
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw) and raw[i + 1] in '"\\':
            out.append(raw[i + 1])
            i += 2
            continue
        if char == '"':
            if raw[i + 1:]:
                raise ValueError(f"form part options are not supported: {raw!r}")
            return "".join(out)
        out.append(char)
        i += 1
    raise ValueError(f"unterminated quoted form value: {raw!r}")


def _header(raw: str) -> tuple[str, str | None]:
    """``(name, value)``; value None for ``Name:`` (curl removes the header)."""
    colon, semicolon = raw.find(":"), raw.find(";")
    if semicolon != -1 and (colon == -1 or semicolon < colon) and raw[semicolon + 1:].strip() == "":
        return raw[:semicolon].strip(), ""  # 'Name;': the header with an empty value
    if colon == -1:
        raise ValueError(f"not a header: {raw!r}")
    name, value = raw[:colon].strip(), raw[colon + 1:].lstrip()
    return name, (value if value else None)


def parse(command: str) -> CurlRequest:
    # A backslash before a newline is the shell's line continuation, not part of the request.
    tokens = shlex.split(command.replace("\\\n", " "))
    assert tokens and tokens[0] == "curl", tokens[:1]
    method, url, headers, form, follow, globbing = None, None, [], [], False, True
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if token in ("--location", "-L"):
            follow = True
        elif token in ("-g", "--globoff"):
            globbing = False
        elif token in ("--request", "-X"):
            i += 1
            method = tokens[i]
        elif token in ("--header", "-H"):
            i += 1
            name, value = _header(tokens[i])
            headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
            if value is not None:
                headers.append((name, value))
        elif token in ("--form", "-F"):
            i += 1
            name, _, raw = tokens[i].partition("=")
            form.append((name, _form_value(raw)))
        elif token.startswith("-"):
            raise ValueError(f"curl option not supported by this replay: {token}")
        else:
            assert url is None, "one URL per example"
            url = token
        i += 1
    assert url is not None, "no URL"
    if globbing:
        assert not any(c in urlsplit(url).query + urlsplit(url).path for c in "{}[]"), "curl would glob this URL"
    return CurlRequest(method or ("POST" if form else "GET"), url, headers, form, follow, globbing)


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    url: str

    def json(self) -> Any:
        assert self.content_type.split(";")[0].strip() == "application/json", (self.status, self.content_type,
                                                                               self.body[:300])
        return json.loads(self.body)


def multipart(form: list[tuple[str, str]]) -> tuple[bytes, str]:
    """The body and content type curl sends for ``--form`` parts."""
    boundary = "------------------------" + uuid_lib.uuid4().hex[:16]
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode()
             + b"\r\n" for name, value in form]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send(request: CurlRequest, timeout: float = 60) -> Reply:
    """Send ``request`` as curl would (headers in order, exact path and query bytes)."""
    url, method, body, content_type = request.url, request.method, None, None
    if request.form:
        body, content_type = multipart(request.form)
    for _ in range(10):
        parts = urlsplit(url)
        assert parts.scheme == "http", url
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            connection.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                                  skip_accept_encoding=True)
            connection.putheader("User-Agent", "curl-replay")
            connection.putheader("Accept", "*/*")
            for name, value in request.headers:
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Type", content_type)
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read()
            location = response.getheader("Location")
        finally:
            connection.close()
        if not (request.follow and response.status in REDIRECTS and location):
            return Reply(response.status, response.getheader("Content-Type") or "", data, url)
        url = urljoin(url, location)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, body = "GET", None
    raise AssertionError("too many redirects")


def replay(command: str, base_url: str, token: str, placeholders: dict[str, str] | None = None) -> Reply:
    return send(parse(render(command, base_url, token, placeholders)))


def curl_available() -> bool:
    return shutil.which("curl") is not None


def run_curl(command: str, base_url: str, token: str, placeholders: dict[str, str] | None, tmp: Path) -> Reply:
    """The rendered command run by the real curl binary (argv, no shell)."""
    argv = shlex.split(render(command, base_url, token, placeholders).replace("\\\n", " "))
    out = tmp / f"curl-{uuid_lib.uuid4().hex}.body"
    done = subprocess.run([shutil.which("curl"), *argv[1:], "--silent", "--show-error", "--output", str(out),
                           "--write-out", "%{http_code}\n%{content_type}\n%{url_effective}"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr)
    status, content_type, effective = (done.stdout.split("\n") + ["", ""])[:3]
    return Reply(int(status), content_type, out.read_bytes(), effective)
