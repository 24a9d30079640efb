"""Admin JSON API: known remote nodes (``/api/admin/nodes``), mirroring ``cloudfilm node``.

A body with ``"ai": "ct-chest"`` registers an AI service, as ``node add --ai`` does; the
answer names its account (``ai.<name>``), for which an admin then issues a token.

For admins and hospital operators; every change is audited.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.access import audit
from cloudfilm.api.authn import require_user
from cloudfilm.domain.access import Decision, Role
from cloudfilm.domain.nodes import InvalidNode, Node
from cloudfilm.services.ai.nodes import add_ai_node
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.nodes import UnknownNode

ADMINS = (Role.ADMIN, Role.OPERATOR)  # hospital IT connects PACS


def _archive(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


async def list_nodes(request: Request) -> Response:
    require_user(request, ADMINS)
    nodes = await run_in_threadpool(_archive(request).nodes.list)
    return JSONResponse([n.as_dict() for n in nodes])


async def add_node(request: Request) -> Response:
    require_user(request, ADMINS)
    try:
        body = orjson.loads(await request.body())
        node = Node(str(body["name"]), str(body["aet"]), str(body["host"]), int(body["port"]),
                    body.get("dicomweb"), sees=str(body.get("sees", "own")),
                    issuer=str(body.get("issuer", "")),
                    ai=str(body["ai"]) if body.get("ai") else None)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise HTTPException(400, f"invalid node: {exc}") from exc
    except KeyError as exc:
        raise HTTPException(400, f"invalid node: field {exc.args[0]!r} is required") from exc
    archive = _archive(request)
    answer = node.as_dict()
    try:
        if node.ai:  # an AI service: the node and the account its results come back with
            answer["account"] = await run_in_threadpool(add_ai_node, archive, node)
        else:
            await run_in_threadpool(archive.nodes.add, node)
    except InvalidNode as exc:
        raise HTTPException(409 if "exists" in str(exc) else 400, str(exc)) from exc
    await audit(request, "admin", Decision(True, "admin"), None,
                detail={"change": "node added"} | node.as_dict())
    return JSONResponse(answer, status_code=201)


async def remove_node(request: Request) -> Response:
    require_user(request, ADMINS)
    try:
        await run_in_threadpool(_archive(request).nodes.remove, request.path_params["name"])
    except UnknownNode as exc:
        raise HTTPException(404, str(exc)) from exc
    await audit(request, "admin", Decision(True, "admin"), None,
                detail={"change": "node removed", "name": request.path_params["name"]})
    return Response(status_code=204)


routes = [
    Route("/admin/nodes", list_nodes, methods=["GET"]),
    Route("/admin/nodes", add_node, methods=["POST"]),
    Route("/admin/nodes/{name}", remove_node, methods=["DELETE"]),
]
