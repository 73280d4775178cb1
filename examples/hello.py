"""The first app of the ASGI introduction (uvicorn's quickstart), as published: headers as
a list of lists.

    ferricorn examples.hello:app
"""


async def app(scope, receive, send):
    assert scope['type'] == 'http'

    await send({
        'type': 'http.response.start',
        'status': 200,
        'headers': [
            [b'content-type', b'text/plain'],
        ],
    })
    await send({
        'type': 'http.response.body',
        'body': b'Hello, world!',
    })
