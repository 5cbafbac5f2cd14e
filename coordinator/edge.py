"""The RPC edge: turns domain errors and database failures into gRPC statuses, once.

Every servicer method is wrapped by `unary` or `streaming`. A CoordinatorError becomes its
status code with an ErrorInfo reason; a lost database becomes UNAVAILABLE (retryable);
anything else is logged with its traceback and becomes INTERNAL without internals leaking.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import psycopg
import psycopg_pool
from grpc_status import rpc_status

from coordinator.errors import CoordinatorError, DatabaseUnavailable

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Servicer = TypeVar("Servicer")
Context = grpc.aio.ServicerContext[Any, Any]


async def _abort(context: Context, exc: BaseException, method: str) -> NoReturn:
    if isinstance(exc, CoordinatorError):
        error = exc
    elif isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        log.warning("%s: database unavailable: %s", method, exc)
        error = DatabaseUnavailable()
    else:
        log.exception("%s failed", method, exc_info=exc)
        error = CoordinatorError("internal error; see the coordinator's log")
    status = rpc_status.to_status(error.to_status())
    await context.abort(status.code, status.details, status.trailing_metadata)


def unary(
    method: Callable[[Servicer, Request, Context], Awaitable[Response]],
) -> Callable[[Servicer, Request, Context], Awaitable[Response]]:
    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: Context) -> Response:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await _abort(context, exc, method.__name__)

    return wrapper


def streaming(
    method: Callable[[Servicer, Request, Context], AsyncIterator[Response]],
) -> Callable[[Servicer, Request, Context], AsyncIterator[Response]]:
    @functools.wraps(method)
    async def wrapper(
        self: Servicer, request: Request, context: Context
    ) -> AsyncIterator[Response]:
        try:
            async for response in method(self, request, context):
                yield response
        except Exception as exc:
            await _abort(context, exc, method.__name__)

    return wrapper
