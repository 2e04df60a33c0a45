"""JSON API plumbing: one route table that validates input, checks credentials, maps errors and
produces the OpenAPI document served at /openapi.json."""

from __future__ import annotations

import collections
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.json_body import JsonBodyError, read_json_object
from server.keys import SETTINGS, TOKENS
from server.tokens import TokenError
from signaling.permissions import Grant

log = logging.getLogger(__name__)


class Auth(StrEnum):
    PLATFORM = "platform"
    """The education platform's back end: `Authorization: Bearer <PARLOIR_API_KEY>`."""
    PARTICIPANT = "participant"
    """A participant: `Authorization: Bearer <join token>` for the room in the path."""
    STAFF = "staff"
    """Support, product and billing staff: `Authorization: Bearer <PARLOIR_STAFF_TOKEN>` or the
    staff cookie set by POST /api/staff/login."""
    NONE = "none"


STAFF_COOKIE = "parloir_staff"


class ApiError(Exception):
    """Raised by handlers; becomes a JSON error response `{"error": code, "message": ...}`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


API_ERRORS: collections.Counter[str] = collections.Counter()
"""Errors answered by the JSON APIs, by code (exported on /metrics)."""


def page(items: list[Any], total: int, offset: int) -> dict[str, Any]:
    """The one shape of every paginated list: this page's items and where it sits."""
    return {"items": items, "count": len(items), "total": total, "offset": offset}


def error_response(error: ApiError) -> web.Response:
    API_ERRORS[error.code] += 1
    body = {"error": error.code, "message": error.message, **error.extra}
    return web.json_response(body, status=error.status)


@dataclass
class Caller:
    """Who is calling, once the route's credential checked out."""

    auth: Auth
    grant: Grant | None = None
    """For participant routes: the verified join token."""


@dataclass
class RequestContext:
    request: web.Request
    caller: Caller
    body: Any = None
    """The validated body model, when the route declares one."""
    query: Any = None
    """The validated query model, when the route declares one."""

    @property
    def app(self) -> web.Application:
        return self.request.app

    def path(self, name: str) -> str:
        return self.request.match_info[name]


Handler = Callable[[RequestContext], Awaitable[Any]]


@dataclass
class Endpoint:
    method: str
    path: str
    summary: str
    auth: Auth
    handler: Handler
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    tag: str = "platform"


@dataclass
class ApiRoutes:
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        status: int = 200,
        tag: str = "platform",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(method, path, summary, auth, handler, body, query, status, tag)
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        return _openapi(self.endpoints, title, version)


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            caller = await authenticate(request, endpoint.auth)
            context = RequestContext(request, caller)
            if endpoint.query is not None:
                context.query = _validate(endpoint.query, dict(request.query), "query")
            if endpoint.body is not None:
                body = await read_json_object(request, required=True)
                context.body = _validate(endpoint.body, body, "body")
            result = await endpoint.handler(context)
        except ApiError as error:
            return error_response(error)
        except JsonBodyError as error:
            return error_response(ApiError(error.status, error.code, error.message))
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return web.json_response(result, status=endpoint.status)

    return handle


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    if not isinstance(data, dict):
        raise ApiError(400, "malformed", f"{where} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors()[:10]
        ]
        raise ApiError(
            422,
            "invalid",
            f"invalid {where}: "
            + "; ".join(f"{p['field'] or where}: {p['problem']}" for p in problems),
            problems=problems,
        ) from exc


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def same_secret(given: str | None, expected: str) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def authenticate(request: web.Request, auth: Auth) -> Caller:
    settings = request.app[SETTINGS]
    if auth is Auth.NONE:
        return Caller(auth)
    if auth is Auth.PLATFORM:
        if not same_secret(_bearer(request), settings.api_key):
            raise ApiError(401, "unauthorized", "platform API key required (Authorization: Bearer)")
        return Caller(auth)
    if auth is Auth.STAFF:
        given = _bearer(request) or request.cookies.get(STAFF_COOKIE)
        if not same_secret(given, settings.staff_token):
            raise ApiError(401, "unauthorized", "staff credential required")
        return Caller(auth)
    token = _bearer(request) or request.query.get("token")
    if not token:
        raise ApiError(401, "unauthorized", "join token required (Authorization: Bearer)")
    try:
        grant = request.app[TOKENS].verify(token)
    except TokenError as exc:
        raise ApiError(401, exc.code, exc.reason) from exc
    room = request.match_info.get("room")
    if room is not None and grant.room != room:
        raise ApiError(403, "wrong-room", "the token is for another room")
    return Caller(auth, grant)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """API paths answer JSON even for unknown routes, wrong methods and server faults."""
    if not request.path.startswith(("/api/", "/v2/")):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(
            ApiError(exc.status, exc.reason.lower().replace(" ", "-"), exc.reason)
        )
    except Exception:
        log.exception("API request failed: %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "server error"))
    if response.status in (401, 403):
        # An audit trail of refused credentials: who and where, never the credential (the
        # path carries none; query strings and headers are left out).
        log.warning(
            "refused %s %s: %d from %s",
            request.method,
            request.path,
            response.status,
            request.remote,
        )
    return response


# ---- OpenAPI ----------------------------------------------------------------------------------

_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.PLATFORM: [{"platformKey": []}],
    Auth.PARTICIPANT: [{"joinToken": []}],
    Auth.STAFF: [{"staffToken": []}, {"staffCookie": []}],
    Auth.NONE: [],
}


def _openapi(endpoints: list[Endpoint], title: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "security": _SECURITY[endpoint.auth],
            "responses": {
                str(endpoint.status): {"description": "success"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"},
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(endpoint.path)
        ]
        if endpoint.query is not None:
            for name, spec in endpoint.query.model_json_schema()["properties"].items():
                parameters.append({"name": name, "in": "query", "required": False, "schema": spec})
        if parameters:
            operation["parameters"] = parameters
        if endpoint.body is not None:
            schema = endpoint.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas[name] = definition
            schemas[endpoint.body.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{endpoint.body.__name__}"}
                    }
                },
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["error", "message"],
                                "properties": {
                                    "error": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
            "securitySchemes": {
                "platformKey": {"type": "http", "scheme": "bearer"},
                "joinToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "staffToken": {"type": "http", "scheme": "bearer"},
                "staffCookie": {"type": "apiKey", "in": "cookie", "name": STAFF_COOKIE},
            },
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
