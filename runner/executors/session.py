"""Making an HTTP request with httpx, in the event loop: what http jobs (`http.py`) and llm
jobs (`llm.py`) share, through `Session.request`:

- one `httpx.AsyncClient` per run (per TLS setting), so connections are pooled,
  closed by the engine when the run ends; cookies are never kept, so no node
  sees another's;
- a total deadline over the whole exchange (connecting, sending, waiting, every
  byte of the body, each redirect), on top of httpx's per-operation timeouts, so
  that a server trickling one byte at a time cannot hold a node;
- the body limit enforced while the body streams in, never after;
- redirects followed by hand, when asked: at most `MAX_REDIRECTS`, and without
  credentials (Authorization, Proxy-Authorization, cookies, any header holding
  a secret) to another origin;
- every request logged as a line of the node, secrets masked, and every message
  masked before it is cut short, so that no part of a secret survives a cut.
"""

from __future__ import annotations

import email.utils
import math
import re
import ssl
import time
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Callable, Iterable

import httpx
import trio

from runner.model.durations import format_duration
from runner.masking import MASK, Masker
from runner.model.workflow import HttpSpec
from runner.executors import NodeFailed

DEFAULT_TIMEOUT = 60.0  # total, when neither the request nor the job has a timeout
CONNECT_TIMEOUT = 10.0
MAX_REDIRECTS = 10
SNIPPET = 200  # characters of a body quoted in a message
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
USER_AGENT = "runner/0.1"


class RequestFailed(NodeFailed):
    """No usable response: the connection, the deadline or a limit failed the request.

    `message` names the request (`GET https://…: timed out …`), `cause` only
    what went wrong.  `sent`: the server may have received the request (a POST
    may have taken effect).  `retryable`: another attempt may do better (a
    refused connection, a timeout), unlike a certificate that will not verify.
    """

    def __init__(self, what: str, cause: str, *, sent: bool, retryable: bool):
        super().__init__(f"{what}: {cause}")
        self.message = f"{what}: {cause}"
        self.cause = cause
        self.sent = sent
        self.retryable = retryable


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: Any = None
    json: Any = None
    has_json: bool = False
    content: bytes | None = None
    form: dict[str, Any] | None = None
    timeout: float = DEFAULT_TIMEOUT  # total, math.inf for none of our own
    max_bytes: int = HttpSpec.max_bytes
    follow_redirects: bool = False
    verify: bool | str = True  # or the path of a CA bundle
    secrets: tuple[str, ...] = ()  # values to mask besides the run's secrets (an API key)


@dataclass
class Reply:
    method: str
    url: str  # the final one, masked, for messages
    final_url: str  # the final one as it is, for `response.url`
    status: int
    phrase: str
    headers: httpx.Headers
    body: bytes
    charset: str | None

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """A status that another attempt may well not get: too many requests, a server error."""
        return self.status == 429 or self.status >= 500

    @property
    def retry_after(self) -> float | None:
        """The server's `Retry-After`, in seconds from now (delta-seconds or an HTTP date)."""
        value = self.headers.get("retry-after", "").strip()
        if not value:
            return None
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - time.time())


class _NoCookies(DefaultCookiePolicy):
    """Cookies are not kept: nodes share the run's client, never its cookies."""

    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False


class Session:
    """What the http and llm jobs of one run share: clients, the secrets to mask."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.masker = Masker(s for s in secrets if s)  # percent-encoded spellings included
        self._clients: dict[Any, httpx.AsyncClient] = {}
        self._extra: dict[tuple[str, ...], Masker] = {}  # a job's own secrets (an API key): built once

    def mask(self, text: str, extra: Iterable[str] = ()) -> str:
        text = self.masker.text(text)
        extra = tuple(e for e in extra if e)
        if not extra:
            return text
        if extra not in self._extra:
            self._extra[extra] = Masker(extra)
        return self._extra[extra].text(text)

    def show_url(self, url: httpx.URL | str, extra: Iterable[str] = ()) -> str:
        """The URL as logs and messages show it: a password in it, and every secret, masked."""
        try:
            url = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            return self.mask(str(url), extra)
        if url.password:
            url = url.copy_with(password=MASK)
        return self.mask(str(url), extra)

    def snippet(self, text: str, extra: Iterable[str] = ()) -> str:
        """The start of a body for a one-line message: masked first, then cut."""
        text = " ".join(self.mask(text, extra).split())
        return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"

    def _client(self, verify: bool | str) -> httpx.AsyncClient:
        client = self._clients.get(verify)
        if client is None:
            if isinstance(verify, str):
                tls: bool | ssl.SSLContext = ssl.create_default_context(cafile=verify)
            else:
                tls = verify
            client = self._clients[verify] = httpx.AsyncClient(
                verify=tls,
                follow_redirects=False,  # followed by hand, see _exchange
                cookies=CookieJar(policy=_NoCookies()),  # a jar, not httpx.Cookies: that would copy it
                headers={"User-Agent": USER_AGENT},
                # `concurrency` bounds the requests in flight; the pool need not.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
            )
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def request(self, req: Request, log: Callable[[str], None]) -> Reply:
        """Make the request and read the whole body, within the request's deadline.

        RequestFailed when there is no usable response; a response of any
        status is a Reply.  Each exchange (and each redirect) is logged.
        """
        shown = self.show_url(req.url, req.secrets)
        start = time.monotonic()
        try:
            with trio.move_on_after(req.timeout):
                try:
                    return await self._exchange(req, log)
                except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError, ValueError, TypeError) as e:
                    raise self._failure(req, shown, e) from None
        except RequestFailed as e:
            log(f"{req.method} {shown} → failed after {_seconds(time.monotonic() - start)}: {e.cause}")
            raise
        except trio.Cancelled:  # from outside: Ctrl-C, the job's timeout, fail_fast
            log(f"{req.method} {shown} → stopped after {_seconds(time.monotonic() - start)}")
            raise
        limit = format_duration(req.timeout)
        log(f"{req.method} {shown} → no complete response within {limit}")
        cause = f"no complete response within {limit} (timeout)"
        raise RequestFailed(f"{req.method} {shown}", cause, sent=True, retryable=True)

    async def _exchange(self, req: Request, log: Callable[[str], None]) -> Reply:
        client = self._client(req.verify)
        body: dict[str, Any] = {}
        if req.has_json:
            body["json"] = req.json
        elif req.content is not None:
            body["content"] = req.content
        elif req.form is not None:
            body["data"] = req.form
        request = client.build_request(
            req.method, req.url, params=req.params, headers=req.headers, timeout=_timeouts(req.timeout), **body
        )
        redirects = 0
        while True:
            shown = self.show_url(request.url, req.secrets)
            hop_start = time.monotonic()
            response = await client.send(request, stream=True)
            try:
                if req.follow_redirects and response.next_request is not None:
                    following = response.next_request
                    if redirects == MAX_REDIRECTS:
                        first = f"{req.method} {self.show_url(req.url, req.secrets)}"
                        raise RequestFailed(first, f"more than {MAX_REDIRECTS} redirects", sent=True, retryable=False)
                    self._strip_credentials(request, following, req.secrets)
                    log(
                        f"{request.method} {shown} → {response.status_code} {response.reason_phrase} → "
                        f"{self.show_url(following.url, req.secrets)}"
                    )
                    request, redirects = following, redirects + 1
                    continue
                content = await self._read(response, req, shown)
            finally:
                with trio.move_on_after(5) as cleanup:
                    cleanup.shield = True
                    await response.aclose()
            reply = Reply(
                method=request.method,
                url=shown,
                final_url=str(request.url),
                status=response.status_code,
                phrase=response.reason_phrase,
                headers=response.headers,
                body=content,
                charset=response.charset_encoding,
            )
            took = _seconds(time.monotonic() - hop_start)
            line = f"{request.method} {shown} → {reply.status} {reply.phrase} in {took}, {_size(len(content))}"
            if reply.retry_after is not None and not reply.ok:
                line += f", Retry-After {format_duration(round(reply.retry_after, 1))}"
            log(line)
            return reply

    async def _read(self, response: httpx.Response, req: Request, shown: str) -> bytes:
        """The body, refused as soon as it is known to be larger than the limit."""
        limit = req.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestFailed(
                f"{req.method} {shown}",
                f"the response is {_size(int(declared))} (Content-Length), "
                f"more than max_bytes ({_size(limit)}); not read",
                sent=True, retryable=False,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise RequestFailed(
                    f"{req.method} {shown}",
                    f"the response is larger than max_bytes ({_size(limit)}); refused after {_size(size)}",
                    sent=True, retryable=False,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _strip_credentials(self, request: httpx.Request, following: httpx.Request, secrets: tuple[str, ...]) -> None:
        """Credentials stay with their origin: httpx drops Authorization; cookies, proxy
        credentials and any header holding a secret go too.  (An upgrade from http to
        https on the same host keeps them, as httpx does.)"""
        old, new = _origin(request.url), _origin(following.url)
        if old == new or (old == ("http", new[1], 80) and new[0] == "https" and new[2] == 443):
            return
        for name in list(following.headers.keys()):
            value = following.headers[name]
            if name.lower() in CREDENTIAL_HEADERS or self.mask(value, secrets) != value:
                del following.headers[name]

    def _failure(self, req: Request, shown: str, e: BaseException) -> RequestFailed:
        what = f"{req.method} {shown}"
        cause = _cause(e, self, req)
        if isinstance(e, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return RequestFailed(what, cause, sent=False, retryable=True)
        if isinstance(e, httpx.ConnectError) and _certificate_problem(e):
            hint = "write `verify: false` to accept any certificate, or `verify: <CA bundle file>`"
            return RequestFailed(what, f"{cause}; {hint}", sent=False, retryable=False)
        if isinstance(e, (httpx.ConnectError, httpx.ProxyError)):
            return RequestFailed(what, cause, sent=False, retryable=True)
        if isinstance(e, (httpx.TimeoutException, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
            return RequestFailed(what, cause, sent=True, retryable=True)
        return RequestFailed(what, cause, sent=False, retryable=False)


def traced(headers: dict[str, str], traceparent: Callable[[str | None], str] | None) -> dict[str, str]:
    """A traced run's request names its attempt's span (W3C Trace Context), so the server it calls
    can join the trace; a `traceparent` the job set itself is left as it is."""
    if traceparent is not None and not any(name.lower() == "traceparent" for name in headers):
        headers["traceparent"] = traceparent(None)
    return headers


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def _timeouts(total: float) -> httpx.Timeout:
    """httpx's per-operation timeouts: none longer than the total deadline."""
    if math.isinf(total):
        return httpx.Timeout(None, connect=CONNECT_TIMEOUT)
    return httpx.Timeout(total, connect=min(CONNECT_TIMEOUT, total))


def _certificate_problem(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _cause(e: BaseException, session: Session, req: Request) -> str:
    """What went wrong, in words, masked."""
    if isinstance(e, httpx.ConnectTimeout):
        text = "timed out connecting"
    elif isinstance(e, httpx.PoolTimeout):
        text = "timed out waiting for a connection"
    elif isinstance(e, httpx.ReadTimeout):
        text = "timed out waiting for the response"
    elif isinstance(e, httpx.WriteTimeout):
        text = "timed out sending the request"
    elif isinstance(e, httpx.ConnectError) and _certificate_problem(e):
        detail = _ssl_detail(e)
        text = "the server's TLS certificate could not be verified" + (f" ({detail})" if detail else "")
    elif isinstance(e, httpx.ConnectError):
        text = f"cannot connect: {_detail(e) or 'connection failed'}"
    elif isinstance(e, httpx.RemoteProtocolError):
        text = f"the server broke the exchange: {_detail(e) or 'protocol error'}"
    elif isinstance(e, (httpx.ReadError, httpx.WriteError)):
        text = f"the connection failed: {_detail(e) or type(e).__name__}"
    elif isinstance(e, httpx.DecodingError):
        text = f"the response body could not be decoded: {_detail(e)}"
    elif isinstance(e, httpx.UnsupportedProtocol):
        text = "the URL must start with http:// or https://"
    elif isinstance(e, (httpx.InvalidURL, httpx.LocalProtocolError)):
        text = f"the request is malformed: {_detail(e)}"
    elif isinstance(e, (ValueError, TypeError)):
        text = f"the request cannot be made: {_detail(e)}"
    else:
        text = _detail(e) or type(e).__name__
    return session.mask(text, req.secrets)


def _detail(e: BaseException) -> str:
    text = str(e).strip()
    if not text and e.__cause__ is not None:
        text = str(e.__cause__).strip()
    return text


def _ssl_detail(e: BaseException) -> str:
    while e is not None:
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or ""
        match = re.search(r"certificate verify failed: ([^(\]]+)", str(e))
        if match:
            return match.group(1).strip()
        e = e.__cause__ or e.__context__
    return ""


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f}s"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes" if n != 1 else "1 byte"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"
