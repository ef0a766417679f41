"""Drives a running bindu agent with the official A2A Python SDK (a2a-sdk 1.x).

Usage: python3 a2a_sdk_client.py AGENT_URL SLOW_AGENT_URL

AGENT_URL is an echo agent that answers at once; SLOW_AGENT_URL one that takes a while
(BINDU_ECHO_DELAY_MS), so a task can be canceled and subscribed to while it works. For each
transport the SDK supports that bindu serves (JSON-RPC and HTTP+JSON), the script resolves the
card, picks the transport with the SDK's own ClientFactory and runs every call, then prints one
JSON report on stdout: {"sdk_version", "transports": {name: {step: {...}}}}. A step that
raised has {"error": "<type>: <message>"}; the Rust test asserts on the report, so the script
itself never decides what passes. Every call has a timeout.
"""

import asyncio
import json
import sys
import traceback
import uuid
from importlib.metadata import version

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.constants import TransportProtocol
from google.protobuf.json_format import MessageToDict

CALL_TIMEOUT = 20.0


def state_name(state):
    return TaskState.Name(state)


def message(text):
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text=text)],
        )
    )


def texts_of(task):
    """The text parts of a task's artifacts, in order."""
    return [p.text for a in task.artifacts for p in a.parts if p.HasField("text")]


def event_kind(event):
    return event.WhichOneof("payload")


async def collect(stream, limit=100):
    """Every StreamResponse of `stream`, at most `limit` of them."""
    events = []
    async for event in stream:
        events.append(event)
        if len(events) >= limit:
            break
    return events


async def step(report, name, coro):
    try:
        report[name] = await asyncio.wait_for(coro, CALL_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - the report carries every failure
        report[name] = {
            "error": "%s: %s" % (type(e).__name__, e),
            "trace": traceback.format_exc(limit=4),
        }


async def client_for(http, card, binding, streaming):
    config = ClientConfig(
        streaming=streaming,
        httpx_client=http,
        supported_protocol_bindings=[binding],
        use_client_preference=True,
    )
    return ClientFactory(config).create(card)


async def run_transport(url, slow_url, binding):
    report = {}
    # One httpx client for the SDK's clients (shared, closed here): timeouts on every call.
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        slow_card = await A2ACardResolver(http, slow_url).get_agent_card()
        blocking = await client_for(http, card, binding, streaming=False)
        streaming = await client_for(http, card, binding, streaming=True)
        slow = await client_for(http, slow_card, binding, streaming=False)
        slow_stream = await client_for(http, slow_card, binding, streaming=True)
        report["interface_url"] = blocking._transport.url  # noqa: SLF001 - which one was picked
        report["transport_class"] = type(blocking._transport).__name__  # noqa: SLF001

        async def send_blocking():
            events = await collect(blocking.send_message(message("hello sdk")))
            task = events[0].task
            return {
                "events": [event_kind(e) for e in events],
                "task_id": task.id,
                "context_id": task.context_id,
                "state": state_name(task.status.state),
                "texts": texts_of(task),
                "history_roles": [Role.Name(m.role) for m in task.history],
            }

        await step(report, "send_blocking", send_blocking())
        sent = report["send_blocking"]

        async def stream():
            events = await collect(streaming.send_message(message("stream sdk")))
            final = None
            kinds = []
            texts = []
            for e in events:
                kind = event_kind(e)
                kinds.append(kind)
                if kind == "status_update":
                    final = state_name(e.status_update.status.state)
                elif kind == "task":
                    final = state_name(e.task.status.state)
                elif kind == "artifact_update":
                    texts += [p.text for p in e.artifact_update.artifact.parts if p.HasField("text")]
            task_ids = sorted(
                {
                    getattr(e, k).task_id if k != "task" else e.task.id
                    for e, k in zip(events, kinds)
                    if k in ("task", "status_update", "artifact_update")
                }
            )
            return {"events": kinds, "final_state": final, "texts": texts, "task_ids": task_ids}

        await step(report, "stream", stream())

        async def get_task():
            task = await blocking.get_task(GetTaskRequest(id=sent["task_id"], history_length=1))
            return {
                "task_id": task.id,
                "state": state_name(task.status.state),
                "texts": texts_of(task),
                "history_len": len(task.history),
            }

        if "task_id" in sent:
            await step(report, "get_task", get_task())

        async def list_tasks():
            page = await blocking.list_tasks(
                ListTasksRequest(
                    context_id=sent["context_id"],
                    status=TaskState.TASK_STATE_COMPLETED,
                    page_size=10,
                )
            )
            return {
                "ids": [t.id for t in page.tasks],
                "states": [state_name(t.status.state) for t in page.tasks],
                "page_size": page.page_size,
                "total_size": page.total_size,
                "next_page_token": page.next_page_token,
            }

        if "context_id" in sent:
            await step(report, "list_tasks", list_tasks())

        async def cancel():
            req = message("cancel me")
            req.configuration.return_immediately = True
            events = await collect(slow.send_message(req))
            task = events[0].task
            canceled = await slow.cancel_task(CancelTaskRequest(id=task.id))
            again = await slow.get_task(GetTaskRequest(id=task.id))
            return {
                "submitted_state": state_name(task.status.state),
                "canceled_state": state_name(canceled.status.state),
                "state_after": state_name(again.status.state),
            }

        await step(report, "cancel", cancel())

        async def subscribe():
            req = message("subscribe me")
            req.configuration.return_immediately = True
            events = await collect(slow.send_message(req))
            task_id = events[0].task.id
            sub = await collect(slow_stream.subscribe(SubscribeToTaskRequest(id=task_id)))
            kinds = [event_kind(e) for e in sub]
            final = None
            for e, k in zip(sub, kinds):
                if k == "status_update":
                    final = state_name(e.status_update.status.state)
                elif k == "task":
                    final = state_name(e.task.status.state)
            first = MessageToDict(sub[0]) if sub else None
            return {"events": kinds, "final_state": final, "first": first}

        await step(report, "subscribe", subscribe())

        for c in (blocking, streaming, slow, slow_stream):
            await c.close()
    return report


async def main():
    url, slow_url = sys.argv[1], sys.argv[2]
    out = {"sdk_version": version("a2a-sdk"), "transports": {}}
    card_report = {}
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT) as http:
        card = await asyncio.wait_for(A2ACardResolver(http, url).get_agent_card(), CALL_TIMEOUT)
        card_report = {
            "name": card.name,
            "streaming": card.capabilities.streaming,
            "interfaces": [
                {
                    "binding": i.protocol_binding,
                    "version": i.protocol_version,
                    "url": i.url,
                }
                for i in card.supported_interfaces
            ],
        }
    out["card"] = card_report
    for name, binding in (
        ("jsonrpc", TransportProtocol.JSONRPC),
        ("http_json", TransportProtocol.HTTP_JSON),
    ):
        try:
            out["transports"][name] = await asyncio.wait_for(
                run_transport(url, slow_url, binding), 6 * CALL_TIMEOUT
            )
        except Exception as e:  # noqa: BLE001
            out["transports"][name] = {
                "error": "%s: %s" % (type(e).__name__, e),
                "trace": traceback.format_exc(limit=6),
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
