"""A Django ASGI app, configured in code (no project directory needed)."""

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

settings.configure(
    DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="test-only"
)


def index(request):
    return HttpResponse("Hello from Django")


def echo(request):
    return JsonResponse({"length": len(request.body), "q": request.GET.get("q")})


async def stream(request):
    async def parts():
        for i in range(3):
            yield f"part {i}\n"

    return StreamingHttpResponse(parts())


urlpatterns = [path("", index), path("echo", echo), path("stream", stream)]
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

app = get_asgi_application()
