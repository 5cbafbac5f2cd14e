"""The RPC edge: turns domain errors and database failures into gRPC statuses, once.

Every servicer method is wrapped by `unary` or `streaming`. A CoordinatorError becomes its
status code with an ErrorInfo reason; a lost database becomes UNAVAILABLE (retryable);
anything else is logged with its traceback and becomes INTERNAL without internals leaking.

The edge also records each call's status code and duration in the Prometheus metrics
(a stream's duration runs until it ends), and tags its log lines with the request's
workflow_id. Payloads and call metadata are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from grpc_status import rpc_status

from coordinator import metrics
from coordinator.errors import CoordinatorError, DatabaseUnavailable
from coordinator.store import db

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Servicer = TypeVar("Servicer")
Context = grpc.aio.ServicerContext[Any, Any]

# A call cancelled this close to its deadline counts as DEADLINE_EXCEEDED: the client's
# deadline passes first and its cancellation may arrive before the server's own deadline
# (which starts when the request arrives, later by the network delay).
_DEADLINE_SLACK_SECONDS = 1.0


def workflow_id_of(request: object) -> str | None:
    """The request's workflow_id for log lines; escaped and capped, as it is not validated."""
    value = getattr(request, "workflow_id", None)
    if not isinstance(value, str) or not value:
        return None
    return value[:256].encode("unicode_escape").decode("ascii")


def domain_error(exc: BaseException, method: str, workflow_id: str | None) -> CoordinatorError:
    """What a call that raised `exc` fails with (logged here): the one mapping of failures
    to errors, shared by unary and streaming RPCs and by Session streams' calls."""
    extra = {} if workflow_id is None else {"workflow_id": workflow_id}
    if isinstance(exc, CoordinatorError):
        # The client is told why; at DEBUG, the log says which call was refused.
        log.debug("%s refused: %s", method, exc.reason, extra=extra)
        return exc
    # A lost or terminated connection (08xxx, 57P01), a standby or demoted primary (25006),
    # no connection in time, a commit the synchronous standby did not confirm: retryable.
    why = db.unavailable_reason(exc)
    if why is not None:
        log.warning("%s: database unavailable: %s", method, why, extra=extra)
        return DatabaseUnavailable(why)
    log.exception("%s failed", method, exc_info=exc, extra=extra)
    return CoordinatorError("internal error; see the coordinator's log")


def _status(exc: BaseException, method: str, workflow_id: str | None) -> grpc.Status:
    error = domain_error(exc, method, workflow_id)
    status: grpc.Status = rpc_status.to_status(error.to_status())
    return status


class _Call:
    """One call as the edge sees it: aborts it on an error, records it in the metrics."""

    def __init__(self, method: str, request: object, context: Context) -> None:
        self.method = method
        self.context = context
        self.workflow_id = workflow_id_of(request)
        self.code: grpc.StatusCode | None = None
        self.started = time.perf_counter()
        # The deadline reaches the database: a statement still running when it passes is
        # cancelled (coordinator/store/db.py). The call's own task and context carry it.
        remaining = context.time_remaining()
        if remaining is not None:
            db.DEADLINE.set(asyncio.get_running_loop().time() + remaining)

    async def abort(self, exc: BaseException) -> NoReturn:
        status = _status(exc, self.method, self.workflow_id)
        self.code = status.code
        await self.context.abort(status.code, status.details, status.trailing_metadata)

    def finished(self) -> None:
        code = self.code
        if code is None:
            # Neither answered nor failed: the call was cancelled, by the client or its deadline.
            remaining = self.context.time_remaining()
            expired = remaining is not None and remaining <= _DEADLINE_SLACK_SECONDS
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        metrics.rpc_finished(self.method, code.name, time.perf_counter() - self.started)


def unary(
    method: Callable[[Servicer, Request, Context], Awaitable[Response]],
) -> Callable[[Servicer, Request, Context], Awaitable[Response]]:
    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: Context) -> Response:
        call = _Call(method.__name__, request, context)
        try:
            response = await method(self, request, context)
            call.code = grpc.StatusCode.OK
            return response
        except Exception as exc:
            await call.abort(exc)
        finally:
            call.finished()

    return wrapper


def streaming(
    method: Callable[[Servicer, Request, Context], AsyncIterator[Response]],
) -> Callable[[Servicer, Request, Context], AsyncIterator[Response]]:
    @functools.wraps(method)
    async def wrapper(
        self: Servicer, request: Request, context: Context
    ) -> AsyncIterator[Response]:
        call = _Call(method.__name__, request, context)
        open_streams = metrics.OPEN_STREAMS.labels(call.method)
        open_streams.inc()
        try:
            # aclosing: when the client goes away, the handler's own cleanup (removing its
            # waiter) runs now, not whenever the abandoned generator is finalized.
            handler = cast(AsyncGenerator[Response, None], method(self, request, context))
            async with contextlib.aclosing(handler) as responses:
                async for response in responses:
                    yield response
            call.code = grpc.StatusCode.OK
        except Exception as exc:
            await call.abort(exc)
        finally:
            open_streams.dec()
            call.finished()

    return wrapper
