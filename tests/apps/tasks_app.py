"""The asyncio Task each request runs in, as an app sees it.

    app           answers JSON about its own Task: whether it is an asyncio.Task among
                  asyncio.all_tasks(), its name, whether the task factory made it, the
                  context variable as the request found it (then sets it to the path), and
                  whether asyncio.wait_for's timeout (which cancels the Task and takes the
                  cancellation back) works in it
    factory_app   the same app; its lifespan startup installs a task factory that names the
                  Tasks it makes "factory-N"
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools

from apps._util import send_json

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen")
_factory_count = itertools.count(1)


async def _timeout_works() -> bool:
    try:
        await asyncio.wait_for(asyncio.sleep(5), 0.01)
    except asyncio.TimeoutError:
        return True
    return False


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, install_factory=False)
        return
    task = asyncio.current_task()
    found = _seen.get(None)
    _seen.set(scope["path"])
    await send_json(send, {
        "is_task": isinstance(task, asyncio.Task),
        "in_all_tasks": task in asyncio.all_tasks(),
        "name": task.get_name(),
        "context_found": found,
        "timeout_works": await _timeout_works(),
        "cancelling": task.cancelling(),
    })


async def factory_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, install_factory=True)
        return
    await app(scope, receive, send)


def _naming_factory(loop, coro, **kwargs):
    return asyncio.Task(coro, loop=loop, name=f"factory-{next(_factory_count)}", **kwargs)


async def _lifespan(receive, send, install_factory: bool) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if install_factory:
                asyncio.get_running_loop().set_task_factory(_naming_factory)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
