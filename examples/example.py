"""An app run from its own file, as the introduction shows it: `python example.py`.

    cd examples && python example.py
"""

import ferricorn


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


if __name__ == "__main__":
    ferricorn.run("example:app", host="127.0.0.1", port=8000, log_level="info")
