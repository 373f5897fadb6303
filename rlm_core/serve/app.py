"""The Starlette application of ``rlm serve``: ``POST /v1/chat/completions`` (plain and streamed),
``GET /v1/models``, ``GET /healthz``, with bearer keys, per-key limits, a body size limit and
OpenAI-shaped errors. A client that disconnects cancels its completion."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rlm_core.serve.config import ServeConfig
from rlm_core.serve.errors import ApiError
from rlm_core.serve.keys import ApiKey, KeyRing
from rlm_core.serve.limits import Limiter
from rlm_core.serve.mapping import (
    KEEPALIVE,
    CompletionInput,
    chunk,
    completion_body,
    extension,
    final_chunks,
    parse_request,
    sse,
)
from rlm_core.serve.runs import Completions, Outcome, ProfileRLM

log = logging.getLogger("rlm.serve")
ANONYMOUS = "anonymous"


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class Service:
    """What the routes share: profiles, keys, the limits ledger and the running completions."""

    def __init__(
        self,
        config: ServeConfig,
        keys: KeyRing,
        limiter: Limiter,
        profiles: dict[str, ProfileRLM],
        remote: Any = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.completions = Completions(profiles, limiter, remote)
        self.anonymous = ApiKey(ANONYMOUS, "", config.server.key_defaults)
        self.started = int(time.time())

    @property
    def stopping(self) -> bool:
        return self.completions.stopping

    # -- request checks ------------------------------------------------------------------------

    def authenticate(self, request: Request) -> ApiKey:
        if not len(self.keys):
            return self.anonymous
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer KEY'",
                "invalid_request_error",
                code="invalid_api_key",
            )
        key = self.keys.match(token.strip())
        if key is None:
            raise ApiError(401, "the API key is not valid", "invalid_request_error", code="invalid_api_key")
        return key

    async def read_json(self, request: Request) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(
                415,
                f"the body must be JSON with 'Content-Type: application/json', got {content_type or 'none'!r}",
                code="unsupported_media_type",
            )
        limit = self.config.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > limit:
                raise _too_large(len(body), limit)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc

    def profile_for(self, key: ApiKey, model: str) -> ProfileRLM:
        profile = self.completions.profiles.get(model)
        if profile is None or not key.may_use(model):
            raise ApiError(
                404,
                f"the model {model!r} does not exist or this key may not use it; GET /v1/models lists them",
                code="model_not_found",
                param="model",
            )
        return profile

    def check_open(self) -> None:
        if self.stopping:
            raise ApiError(
                503,
                "the server is shutting down",
                "server_error",
                code="shutting_down",
                headers={"Retry-After": "1"},
            )

    # -- routes --------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        if self.stopping:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok", "running": len(self.completions)})

    async def models(self, request: Request) -> Response:
        try:
            key = self.authenticate(request)
        except ApiError as error:
            return error_response(error)
        data = [
            {"id": name, "object": "model", "created": self.started, "owned_by": "rlm-core"}
            for name in self.completions.profiles
            if key.may_use(name)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        try:
            self.check_open()
            key = self.authenticate(request)
            parsed = parse_request(await self.read_json(request))
            profile = self.profile_for(key, parsed.model)
            reservation = await self.completions.admit(key.name, key.limits, profile, parsed.overrides)
        except ApiError as error:
            return error_response(error)
        task = self.completions.start(
            profile, parsed.prompt, parsed.root_prompt, parsed.overrides, reservation
        )
        watcher = asyncio.ensure_future(self._watch_disconnect(request, task))
        if parsed.stream:
            return StreamingResponse(
                self._stream(parsed, task, watcher),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            outcome = await self._outcome(task)
        finally:
            watcher.cancel()
        return self._respond(parsed, outcome)

    async def _watch_disconnect(self, request: Request, task: asyncio.Task[Outcome]) -> None:
        """Once the body is read, ``receive`` yields only ``http.disconnect``: the client left."""
        while not task.done():
            message = await request.receive()
            if message["type"] == "http.disconnect":
                self.completions.cancel(task, "disconnect")
                return

    async def _outcome(self, task: asyncio.Task[Outcome]) -> Outcome:
        """The completion's outcome; if this handler is cancelled (the server gave up waiting), the
        completion is cancelled too and waited for, so its sandbox is closed."""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self.completions.cancel(task, "shutdown")
            with contextlib.suppress(BaseException):
                await asyncio.wait({task})
            raise

    def _respond(self, parsed: CompletionInput, outcome: Outcome) -> Response:
        error = self._outcome_error(outcome)
        if error is not None:
            return error_response(error)
        assert outcome.result is not None
        return JSONResponse(completion_body(parsed.model, outcome.result, outcome.log_path))

    def _outcome_error(self, outcome: Outcome) -> ApiError | None:
        result = outcome.result
        if outcome.failed and outcome.failed_code == "worker_failed":
            return ApiError(
                502,
                f"the completion's Ray worker failed ({outcome.failed}); its reservation is charged, "
                "since what it spent is not known",
                "server_error",
                code="worker_failed",
            )
        if outcome.failed:
            return ApiError(
                502,
                f"the completion could not run: {outcome.failed}",
                "server_error",
                code="completion_failed",
                extra={"rlm": extension(result, outcome.log_path)},
            )
        if outcome.cancelled:
            reason = (
                "the server is shutting down"
                if outcome.cancelled == "shutdown"
                else "the client disconnected"
            )
            return ApiError(
                503,
                f"{reason}; the completion was cancelled",
                "server_error",
                code="cancelled",
                extra={"rlm": extension(result, outcome.log_path)},
            )
        assert result is not None
        if result.stop_reason.value == "error":
            return ApiError(
                502,
                f"the completion failed: {result.error or 'unknown error'}",
                "server_error",
                code="completion_failed",
                extra={"rlm": extension(result, outcome.log_path)},
            )
        return None

    async def _stream(
        self, parsed: CompletionInput, task: asyncio.Task[Outcome], watcher: asyncio.Future[Any]
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        ident = "chatcmpl-rlm"
        try:
            yield sse(chunk(ident, parsed.model, created, {"role": "assistant", "content": ""}))
            keepalive = self.config.server.keepalive_seconds
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=keepalive)
                if not done:
                    yield KEEPALIVE
            try:
                outcome = task.result()
            except Exception as exc:
                log.error("completion failed: %s", type(exc).__name__)
                error = ApiError(500, f"the completion failed: {type(exc).__name__}: {exc}", "server_error")
                yield sse(error.body())
                return
            problem = self._outcome_error(outcome)
            if problem is not None:
                yield sse(problem.body())
                return
            assert outcome.result is not None
            for piece in final_chunks(
                ident, parsed.model, created, outcome.result, outcome.log_path, parsed.include_usage
            ):
                yield piece
        finally:
            watcher.cancel()
            if not task.done():
                self.completions.cancel(task, "disconnect")
                with contextlib.suppress(BaseException):
                    await asyncio.wait({task})


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is {size:,} bytes or more, above this server's limit of {limit:,} bytes; "
        "send a smaller context or raise [server] max_body_bytes",
        code="request_too_large",
    )


def build_service(config: ServeConfig, keys: KeyRing) -> Service:
    """Build every profile's RLM (a bad backend or setting fails here, before the server listens)."""
    server = config.server
    limiter = Limiter(
        server.limits_db, min_tokens=max(100, server.min_request_tokens), min_usd=server.min_request_usd
    )
    remote = None
    try:
        profiles = {name: ProfileRLM(profile) for name, profile in config.profiles.items()}
        if server.ray is not None:
            from rlm_core.serve.ray_runs import RayCompletions

            address = None if server.ray == "local" else server.ray
            remote = RayCompletions(config.profiles, address, server.ray_workers)
    except BaseException:
        limiter.close()
        raise
    return Service(config, keys, limiter, profiles, remote)


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.completions.stopping = True
            await service.completions.aclose()
            service.completions.limiter.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(
            ApiError(404, f"no route {request.method} {request.url.path}", code="not_found")
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(
            ApiError(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed")
        )

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s: %s", request.url.path, type(exc).__name__)
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}", "server_error"))

    routes = [
        Route("/v1/chat/completions", service.chat, methods=["POST"]),
        Route("/chat/completions", service.chat, methods=["POST"]),
        Route("/v1/models", service.models, methods=["GET"]),
        Route("/models", service.models, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed, 500: internal},
    )
    app.state.service = service
    return app
