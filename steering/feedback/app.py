"""The annotation app: people compare, rank, rate and critique responses in a browser (`steer annotate`).

A Starlette app over one `FeedbackStore`, served by uvicorn. Pages are Jinja2 templates with autoescaping
on, so a prompt or an answer that holds `<script>` is shown as text; the page script and stylesheet are
served from the package (`static/`) and the Content-Security-Policy allows nothing else, so a page makes no
request that leaves the server.

Routes: `/` (the tasks and how far along they are), `/compare`, `/rank`, `/rate`, `/critique` (the next item
of the annotator's queue; `/<task>/<item id>` a given one, 404 when there is none), `/transcript/<prompt id>`,
and the JSON API the pages use, which scripts can use too: `GET /api/next/<task>`, `POST /api/<task>`,
`POST /api/skip`, `POST /api/undo`. The work is the store's queue of items (`add_items_for_prompt`); each
item goes to `overlap` annotators. A prompt whose `meta["messages"]` is a list of `{"role", "content"}` is
shown as a transcript. A compare answer names the side shown (left / right / tie / both_bad); the app maps
it to response a or b and records which was on the left.

Who is annotating: the token that `steer annotate --add-annotator NAME` printed, sent as the cookie that
`/login?token=…` sets, or as `Authorization: Bearer …`. With `require_tokens` every request needs a valid
one (else 401); without (loopback only), a request with no token is the annotator `local`, and a request
on a Host other than a loopback name is refused, so another web site cannot reach the app by DNS rebinding.
A POST must be JSON, and one whose Origin is another site is refused. The app speaks plain HTTP: off
loopback, put it behind a TLS proxy so that tokens do not cross the network in clear.

An answer carries the request id the page was rendered with: a double submit writes one row. The body is
read up to `max_body_bytes` (413 past it) and checked (`app_input`) before the store sees it, so a refused
POST writes nothing. Every write is one SQLite transaction, so killing the server mid-submit loses at most
the answer in flight, never half of one.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from steering.errors import SteeringError
from steering.feedback.app_episodes import episode_index, episode_turns
from steering.feedback.app_input import (
    KINDS,
    MAX_TEXT,
    SCALE,
    Answer,
    BadAnswer,
    check_order,
    parse_answer,
    parse_json_body,
    whole_number,
)
from steering.feedback.app_items import messages_of, shown_order, shown_swapped
from steering.feedback.app_server import Guard, is_loopback, serve_in_thread
from steering.feedback.store import Annotator, FeedbackStore

__all__ = ["create_app", "is_loopback", "serve_in_thread"]

COOKIE = "steer_token"
LOCAL_ANNOTATOR = "local"  # who answers on loopback when tokens are not required
MAX_BODY_BYTES = 64 * 1024


@cache
def environment() -> Environment:
    """The Jinja2 environment over the packaged templates (autoescape on, undefined names are errors)."""
    return Environment(
        loader=PackageLoader("steering.feedback", "templates"), autoescape=True, undefined=StrictUndefined
    )


class Refused(Exception):
    """A request the app refuses with `status` and a message (401, 404, 422 …)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (declared length or bytes actually sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadAnswer(413, f"the body is larger than {limit} bytes (Content-Length {declared})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadAnswer(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    store: FeedbackStore,
    *,
    overlap: int = 1,
    require_tokens: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The annotation app over `store` (opened and closed by the caller); see the module docstring.

    Args:
        store: the feedback database; the app only adds answers, skips and assignments.
        overlap: how many annotators each item goes to (k), so that agreement can be measured.
        require_tokens: refuse (401) every request without a valid token; needed off loopback.
        max_body_bytes: the largest POST body read; larger ones get 413 and write nothing.
    """
    pages = Pages(store, overlap=overlap, require_tokens=require_tokens, max_body_bytes=max_body_bytes)
    static = Path(__file__).parent / "static"
    routes = [
        Route("/", pages.index),
        Route("/login", pages.login),
        Route("/api/next/{kind}", pages.api_next),
        Route("/api/skip", pages.api_skip, methods=["POST"]),
        Route("/api/undo", pages.api_undo, methods=["POST"]),
        Route("/api/{kind}", pages.api_answer, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
        Route("/transcript/{prompt_id:int}", pages.transcript),
        Route("/episodes", pages.episodes),
        Route("/episode/{tag}", pages.episode),
        Route("/{kind}", pages.task),
        Route("/{kind}/{item_id:int}", pages.task),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        Refused: pages.refused,
        BadAnswer: pages.refused,
        HTTPException: pages.refused,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(Guard, check_host=not require_tokens)
    return app


class Pages:
    """The endpoints: each works out who is asking, then reads or writes the store in a worker thread."""

    def __init__(self, store: FeedbackStore, *, overlap: int, require_tokens: bool, max_body_bytes: int):
        self.store = store
        self.overlap = overlap
        self.require_tokens = require_tokens
        self.max_body_bytes = max_body_bytes
        self.local_id: int | None = None

    # ------------------------------------------------------------------ who is asking
    async def who(self, request: Request) -> Annotator:
        """The annotator of this request, or Refused 401."""
        token = request.cookies.get(COOKIE)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        if token:
            found = await run_in_threadpool(self.store.annotator_for_token, token)
            if found is None:
                raise Refused(
                    401, "this token is not valid: ask for a new one (steer annotate --add-annotator)"
                )
            return found
        if self.require_tokens:
            raise Refused(
                401, "a token is required: open the link that `steer annotate --add-annotator NAME` printed"
            )
        if self.local_id is None:
            self.local_id = await run_in_threadpool(self.store.ensure_annotator, LOCAL_ANNOTATOR, "human")
        return Annotator(self.local_id, LOCAL_ANNOTATOR, "human", 0.0)

    async def login(self, request: Request) -> Response:
        """`/login?token=…`: check the token, keep it in a cookie, and go on without it in the address bar."""
        token = request.query_params.get("token", "")
        if await run_in_threadpool(self.store.annotator_for_token, token) is None:
            raise Refused(401, "this token is not valid: ask for a new one (steer annotate --add-annotator)")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 24 * 3600)
        return response

    # ------------------------------------------------------------------ pages
    async def index(self, request: Request) -> Response:
        annotator = await self.who(request)

        def tasks() -> list[dict[str, Any]]:
            rows = []
            for kind in KINDS:
                progress = self.store.progress(annotator.id, kind, overlap=self.overlap)
                rows.append({"kind": kind, "done": progress.done, "total": progress.total})
            return rows

        rows = await run_in_threadpool(tasks)
        return self.render("index.html", annotator, page="", title="tasks", tasks=rows)

    async def task(self, request: Request) -> Response:
        """`/<task>`: the next item of the queue; `/<task>/<id>`: that item (404 when it is not one)."""
        kind = self.kind_of(request)
        annotator = await self.who(request)
        item_id = request.path_params.get("item_id")
        context = await run_in_threadpool(self.item_context, annotator, kind, item_id)
        if context["item"] is None:
            return self.render("done.html", annotator, page=kind, title=kind, **context)
        return self.render(f"{kind}.html", annotator, page=kind, title=kind, **context)

    async def transcript(self, request: Request) -> Response:
        annotator = await self.who(request)
        prompt_id = request.path_params["prompt_id"]
        prompt = await run_in_threadpool(self.store.prompt, prompt_id)
        if prompt is None:
            raise Refused(404, f"there is no prompt with id {prompt_id}")
        responses = await run_in_threadpool(lambda: self.store.responses(prompt_id=prompt_id))
        return self.render(
            "transcript.html",
            annotator,
            page="transcript",
            title=f"prompt {prompt_id}",
            prompt={"text": prompt.text, "messages": messages_of(prompt.meta)},
            answers=[{"model": r.model, "text": r.text} for r in responses],
            progress=None,
        )

    async def episodes(self, request: Request) -> Response:
        """`/episodes`: the agents' episodes in this database; `/episode/<tag>`: one, turn by turn."""
        annotator = await self.who(request)
        rows = await run_in_threadpool(episode_index, self.store)
        return self.render("episodes.html", annotator, page="episodes", title="episodes", episodes=rows)

    async def episode(self, request: Request) -> Response:
        annotator = await self.who(request)
        tag = request.path_params["tag"]
        episode = await run_in_threadpool(episode_turns, self.store, tag)
        if episode is None:
            raise Refused(404, f"there is no episode {tag!r} (see /episodes)")
        return self.render(
            "episode.html", annotator, page="episodes", title=f"episode {tag}", episode=episode
        )

    def render(self, template: str, annotator: Annotator, **context: Any) -> HTMLResponse:
        context.setdefault("progress", None)
        html = (
            environment()
            .get_template(template)
            .render(kinds=KINDS, annotator=annotator.name, max_text=MAX_TEXT, scale=list(SCALE), **context)
        )
        return HTMLResponse(html)

    # ------------------------------------------------------------------ the JSON API
    async def api_next(self, request: Request) -> Response:
        """The next item of a task as JSON (what the page shows, in the order it shows it), or item null."""
        kind = self.kind_of(request)
        annotator = await self.who(request)
        context = await run_in_threadpool(self.item_context, annotator, kind, None)
        return JSONResponse(context["data"] | {"progress": context["progress"]})

    async def api_answer(self, request: Request) -> Response:
        """Record one answer; the same request id again returns the first answer and writes nothing."""
        kind = request.path_params["kind"]
        annotator = await self.who(request)
        answer = parse_answer(kind, await self.json_body(request))
        answer_id, duplicate = await run_in_threadpool(self.record, annotator, answer)
        return JSONResponse({"answer_id": answer_id, "duplicate": duplicate})

    async def api_skip(self, request: Request) -> Response:
        annotator = await self.who(request)
        item_id = whole_number(await self.json_body(request), "item_id")
        if await run_in_threadpool(self.store.item, item_id) is None:
            raise Refused(404, f"there is no item with id {item_id}")
        await run_in_threadpool(self.store.skip, annotator.id, item_id)
        return JSONResponse({"skipped": item_id})

    async def api_undo(self, request: Request) -> Response:
        """Take back the annotator's latest answer; says which task it was (null when there was none)."""
        annotator = await self.who(request)
        await self.json_body(request)

        def undo() -> dict[str, Any] | None:
            last = self.store.last_answer(annotator.id)
            # Only that answer is taken back: one submitted from another tab meanwhile stays.
            if last is None or self.store.undo_last(annotator.id, answer_id=last.id) is None:
                return None
            item = self.store.next_item(annotator.id, last.kind, overlap=self.overlap)
            return {"answer_id": last.id, "kind": last.kind, "item_id": item.id if item else None}

        return JSONResponse({"undone": await run_in_threadpool(undo)})

    async def json_body(self, request: Request) -> dict[str, Any]:
        """The POST body as a JSON object (size, type and syntax checked)."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in (f"http://{request.headers.get('host', '')}", "null"):
            raise Refused(403, f"a request from another site ({origin}) cannot answer here")
        body = await read_body(request, self.max_body_bytes)
        return parse_json_body(body, request.headers.get("content-type", ""))

    # ------------------------------------------------------------------ work done in a worker thread
    def item_context(self, annotator: Annotator, kind: str, item_id: int | None) -> dict[str, Any]:
        """What a task page (or /api/next) shows: the item, its prompt, its answers in the order shown."""
        if item_id is None:
            item = self.store.next_item(annotator.id, kind, overlap=self.overlap)
        else:
            item = self.store.item(item_id)
            if item is None or item.kind != kind:
                raise Refused(404, f"there is no {kind} item with id {item_id}")
        progress = self.store.progress(annotator.id, kind, overlap=self.overlap)
        shown = {"done": progress.done, "total": progress.total}
        if item is None:
            return {"item": None, "data": {"kind": kind, "item_id": None}, "progress": shown}
        prompt = self.store.prompt(item.prompt_id)
        texts = {r.id: r.text for r in map(self.store.response, item.response_ids) if r is not None}
        answers = [{"id": r, "text": texts.get(r, "")} for r in shown_order(annotator.id, item)]
        data = {
            "kind": kind,
            "item_id": item.id,
            "request_id": secrets.token_urlsafe(16),
            "prompt": {"id": item.prompt_id, "text": prompt.text if prompt else ""},
            "responses": answers,
            "rubric": item.rubric,
        }
        return {
            "item": item,
            "data": data,
            "progress": shown,
            "prompt": {
                "text": prompt.text if prompt else "",
                "messages": messages_of(prompt.meta) if prompt else [],
            },
            "answers": answers,
            "answer": answers[0],
            "left": answers[0],
            "right": answers[-1],
            "rubric": item.rubric or "overall",
        }

    def record(self, annotator: Annotator, answer: Answer) -> tuple[int, bool]:
        """Write one answer (after the item-specific checks); returns its id and whether it was a repeat."""
        item = self.store.item(answer.item_id)
        if item is None or item.kind != answer.kind:
            raise Refused(404, f"there is no {answer.kind} item with id {answer.item_id}")
        duplicate = self.store.answer_for_request(answer.request_id) is not None
        common: dict[str, Any] = {
            "seconds": answer.seconds,
            "request_id": answer.request_id,
            "item_id": item.id,
        }
        fields = answer.fields
        try:
            if item.kind == "compare":
                shown_left = "b" if shown_swapped(annotator.id, item.id) else "a"
                shown_right = "a" if shown_left == "b" else "b"
                choice = {"left": shown_left, "right": shown_right}.get(fields["choice"], fields["choice"])
                first, second = item.response_ids
                answer_id = self.store.add_comparison(
                    annotator.id,
                    response_a=first,
                    response_b=second,
                    choice=choice,
                    shown_left=shown_left,
                    reason=fields["reason"] or None,
                    **common,
                )
            elif item.kind == "rank":
                check_order(fields["order"], item.response_ids)
                answer_id = self.store.add_ranking(annotator.id, fields["order"], **common)
            elif item.kind == "rate":
                answer_id = self.store.add_rating(
                    annotator.id,
                    item.response_ids[0],
                    rubric=item.rubric or "overall",
                    value=fields["value"],
                    **common,
                )
            else:
                answer_id = self.store.add_critique(
                    annotator.id,
                    item.response_ids[0],
                    critique=fields["critique"],
                    revision=fields["revision"] or None,
                    **common,
                )
        except SteeringError as error:  # the store's own checks (e.g. a request id of another annotator)
            raise Refused(422, str(error)) from None
        return answer_id, duplicate

    # ------------------------------------------------------------------ errors
    @staticmethod
    def kind_of(request: Request) -> str:
        kind = request.path_params["kind"]
        if kind not in KINDS:
            raise Refused(404, f"there is no page {request.url.path!r}; the tasks are {', '.join(KINDS)}")
        return str(kind)

    async def refused(self, request: Request, error: Exception) -> Response:
        """JSON `{"error": …}` for the API, an error page for a browser; never a traceback."""
        if isinstance(error, Refused | BadAnswer):
            status, message = error.status, error.message
        elif isinstance(error, HTTPException):
            status, message = error.status_code, str(error.detail)
        else:
            status, message = 500, "internal error"
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"error": message}, status_code=status)
        html = (
            environment()
            .get_template("error.html")
            .render(
                kinds=KINDS,
                annotator="",
                page="",
                title=str(status),
                status=status,
                message=message,
                progress=None,
            )
        )
        return HTMLResponse(html, status_code=status)
