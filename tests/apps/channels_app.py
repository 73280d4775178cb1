"""A Django Channels ASGI app, configured in code (no project directory needed).

HTTP goes to Django as usual; WebSocket connections go through Channels' URLRouter:

    /ws/echo/             AsyncWebsocketConsumer: echo text ("echo: ...") and bytes
                          (reversed); the disconnect close code is recorded
    /ws/json/             AsyncJsonWebsocketConsumer: {"n": x} -> {"n": x, "double": 2x}
    /ws/room/<name>/      sends the URL kwarg, the query string and the chosen subprotocol
    /ws/reject/           closes in connect() without accepting (the client sees 403)
    /ws/close/            accepts, sends "bye", closes with 4001
    /ws/sync/             a synchronous WebsocketConsumer echo (runs in a thread)

GET /disconnects returns the close codes recorded by the echo consumer.
"""

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="test-only",
    INSTALLED_APPS=["channels"],
)

#: Close codes seen by the echo consumer's disconnect().
DISCONNECTS: list[int] = []


def index(request):
    return HttpResponse("Hello from Django with Channels")


def disconnects(request):
    return JsonResponse(DISCONNECTS, safe=False)


urlpatterns = [path("", index), path("disconnects", disconnects)]
django.setup()

from channels.generic.websocket import (  # noqa: E402
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=f"echo: {text_data}")
        else:
            await self.send(bytes_data=bytes_data[::-1])

    async def disconnect(self, code):
        DISCONNECTS.append(code)


class DoubleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.accept()

    async def receive_json(self, content, **kwargs):
        await self.send_json({"n": content["n"], "double": content["n"] * 2})


class RoomConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        offered = self.scope["subprotocols"]
        await self.accept(subprotocol=offered[0] if offered else None)
        await self.send(text_data=self.scope["url_route"]["kwargs"]["name"])
        await self.send(text_data=self.scope["query_string"].decode())
        await self.send(text_data=",".join(offered))


class RejectConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.close()


class CloseConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.send(text_data="bye")
        await self.close(code=4001)


class SyncEchoConsumer(WebsocketConsumer):
    def connect(self):
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=f"sync: {text_data}")


websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    path("ws/json/", DoubleConsumer.as_asgi()),
    path("ws/room/<str:name>/", RoomConsumer.as_asgi()),
    path("ws/reject/", RejectConsumer.as_asgi()),
    path("ws/close/", CloseConsumer.as_asgi()),
    path("ws/sync/", SyncEchoConsumer.as_asgi()),
]

app = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
