"""The Telaten web client's HTTP calls, made as the client makes them.

`WebClient` is one browser tab: its axios instance (JSON `Accept`, `Content-Type` only
with a body, the Bearer token when it has one, the `Origin` of the client's page,
credentials, so the browser's cookie jar goes along) and its chat `fetch` (no cookie).
Two tabs of one browser share a cookie jar. `renewing` replays a call once after a 401
the way the client's interceptor does. `read_chat` parses the stream with the client's
own rule.
"""

from __future__ import annotations

import codecs
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

ORIGIN = "http://localhost:3000"
COOKIE_PATH = "/client/v1/auth"
DT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class Browser:
    """What tabs of one browser share: the cookie jar."""

    def __init__(self, refresh_cookie: str | None = None) -> None:
        """A browser, holding a given refresh cookie (as the server would have set it)."""
        self.cookies = httpx.Cookies()
        if refresh_cookie is not None:
            self.cookies.set("refresh_token", refresh_cookie, domain="127.0.0.1", path=COOKIE_PATH)

    def tab(self, base_url: str) -> WebClient:
        return WebClient(base_url, self)


class WebClient:
    def __init__(self, base_url: str, browser: Browser | None = None) -> None:
        self.base_url = base_url
        self.browser = browser or Browser()
        self.token: str | None = None
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Accept": "application/json", "Origin": ORIGIN},
            timeout=60,
        )

    async def __aenter__(self) -> WebClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """One axios request: a JSON body only when the client sends one."""
        content = None if body is None else json.dumps(body)
        self.http.cookies = self.browser.cookies  # the browser's jar as it is now
        response = await self.http.request(
            method, path, content=content, params=params, headers=self._headers(body is not None)
        )
        # What the server set (or deleted) is the browser's, for every tab; of two
        # answers at once, the later one's cookie is the one kept.
        self.browser.cookies = httpx.Cookies(self.http.cookies)
        return response

    async def renewing(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """The client's response interceptor: after a 401 (not of refresh or logout),
        `POST /auth/refresh` with no body; with a token, the call is replayed once."""
        response = await self.call(method, path, body, params)
        if response.status_code != 401 or path in ("/auth/refresh", "/auth/logout"):
            return response
        renewal = await self.call("POST", "/auth/refresh")
        if renewal.status_code >= 300 or not renewal.json().get("access_token"):
            self.token = None  # local logout
            return response
        self.token = renewal.json()["access_token"]
        return await self.call(method, path, body, params)

    # --- the calls the pages make, numbered as in WEB-CLIENT-CONTRACT.md ------------------

    async def register(self, name: str, email: str, password: str) -> httpx.Response:  # 1
        return await self.call(
            "POST", "/auth/register", {"name": name, "email": email, "password": password}
        )

    async def login(self, email: str, password: str) -> httpx.Response:  # 2
        r = await self.call("POST", "/auth/login", {"email": email, "password": password})
        if r.status_code == 200:
            self.token = r.json()["access_token"]
        return r

    async def sign_up(self, name: str, email: str, password: str) -> dict[str, Any]:
        """The register page: #1, then #2 at once (only its token is used), then #5."""
        r = await self.register(name, email, password)
        assert r.status_code == 201, r.text
        r = await self.login(email, password)
        assert r.status_code == 200, r.text
        me = await self.call("GET", "/auth/me")
        assert me.status_code == 200, me.text
        return me.json()

    async def logout(self) -> httpx.Response:  # 4
        r = await self.call("POST", "/auth/logout", {})
        self.token = None
        return r

    async def onboard(self, name: str = "Warung Bu Dewi", **overrides: Any) -> httpx.Response:
        return await self.call("POST", "/business/profile", onboarding_form(name, **overrides))

    async def chat(self, content: str, session_id: str | None = None) -> ChatReading:  # 31
        """The chat page's `fetch`: JSON body and Bearer, but no cookie."""
        body: dict[str, Any] = {"content": content}
        if session_id is not None:
            body["session_id"] = session_id
        headers = {"Content-Type": "application/json", **self._headers(False)}
        async with (
            httpx.AsyncClient(base_url=self.base_url, headers={"Origin": ORIGIN}, timeout=60) as c,
            c.stream("POST", "/chat/completion", content=json.dumps(body), headers=headers) as r,
        ):
            return await read_chat(r)


def onboarding_form(name: str, **overrides: Any) -> dict[str, Any]:
    """Step 4 of onboarding, as the form sends it."""
    return {
        "business_name": name,
        "business_category": "Food & Beverage",
        "business_description": f"Bisnis {name} bergerak di bidang Food & Beverage",
        "address": {
            "street": "Jl. Melati No. 5",
            "city": "Bandung",
            "state": "Jawa Barat",
            "zip_code": "40115",
            "country": "Indonesia",
        },
        "business_stage": "Operational",
        "target_market": "Mahasiswa dan pekerja kantor",
        "primary_goal": "Menaikkan omzet 20%\nMembuka cabang kedua",
        **overrides,
    }


def unique_email(prefix: str = "dewi") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


# --- the chat stream, read by the client's rule ------------------------------------------


@dataclass
class ChatReading:
    status: int
    headers: httpx.Headers
    frames: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    body: Any = None  # a refusal's JSON body

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == type_]

    @property
    def text(self) -> str:
        return "".join(f["data"]["text"] for f in self.of_type("token"))


async def read_chat(response: httpx.Response) -> ChatReading:
    """`useSendMessage`: each network chunk is decoded, split on newlines, empty lines
    dropped, the first "data: " removed, and the rest parsed as JSON (lines that do not
    parse are skipped). No line is carried over to the next chunk."""
    reading = ChatReading(response.status_code, response.headers)
    decoder = codecs.getincrementaldecoder("utf-8")()
    raw = b""
    async for chunk in response.aiter_raw():
        raw += chunk
        reading.chunks += 1
        for line in filter(None, decoder.decode(chunk).split("\n")):
            try:
                frame = json.loads(line.replace("data: ", "", 1))
            except ValueError:
                continue
            if isinstance(frame, dict):
                reading.frames.append(frame)
    if response.status_code != 200:
        reading.body = json.loads(raw)
    return reading


# --- field checks ---------------------------------------------------------------------------


def is_dt(value: Any) -> bool:
    """An ISO-8601 instant with an offset (what `new Date(...)` reads as an instant)."""
    return (
        isinstance(value, str)
        and bool(DT.match(value))
        and bool(datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo)
    )


def is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def optional(check: Any) -> Any:
    def inner(value: Any) -> bool:
        return value is None or check(value)

    inner.__name__ = f"optional({check.__name__})"
    return inner


def assert_reads(obj: Any, fields: dict[str, Any]) -> None:
    """Every field the client reads is there with the type it expects."""
    assert isinstance(obj, dict), obj
    for name, check in fields.items():
        if getattr(check, "__name__", "").startswith("optional("):
            assert check(obj.get(name)), (name, obj.get(name), check.__name__)
        else:
            assert name in obj, (name, obj)
            assert check(obj[name]), (name, obj[name], check.__name__)
