"""The streaming app of the ASGI introduction: "Hello", ", ", "world!" one second apart.

    ferricorn examples.stream:app
    curl -N http://127.0.0.1:8000/
"""

import asyncio


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    parts = [b"Hello", b", ", b"world!"]
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})
        if i < len(parts) - 1:
            await asyncio.sleep(1)
