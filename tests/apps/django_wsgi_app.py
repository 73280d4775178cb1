"""A sync Django app served through WSGI (django.core.wsgi), configured in code.

    /                 "Hello from Django WSGI"
    /form             POST (csrf exempt): {"fields": request.POST, "files": {name: {"name",
                      "size", "sha256"}}}
    /json             {"path", "q", "method", "script_name", "length", "is_secure"}
    /path/<name>      {"name": name}
    /file             FileResponse(open(path, "rb")) (query: path)
    /stream           StreamingHttpResponse of `n` lines "part <i>\n" (query: n)
    /boom             raises RuntimeError("django-boom")
"""

import hashlib

import django
from django.conf import settings
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

settings.configure(
    DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="test-only",
    MIDDLEWARE=["django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware"],
)


def index(request):
    return HttpResponse("Hello from Django WSGI")


@csrf_exempt
def form(request):
    files = {}
    for name, upload in request.FILES.items():
        data = upload.read()
        files[name] = {"name": upload.name, "size": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()}
    return JsonResponse({"fields": request.POST.dict(), "files": files})


@csrf_exempt
def json_view(request):
    return JsonResponse({"path": request.path, "q": request.GET.get("q"),
                         "method": request.method, "script_name": request.META["SCRIPT_NAME"],
                         "length": len(request.body), "is_secure": request.is_secure()})


def named(request, name):
    return JsonResponse({"name": name})


def file(request):
    return FileResponse(open(request.GET["path"], "rb"))  # closed by Django after sending


def stream(request):
    count = int(request.GET.get("n", "3"))
    return StreamingHttpResponse((f"part {i}\n" for i in range(count)),
                                 content_type="text/plain")


def boom(request):
    raise RuntimeError("django-boom")


urlpatterns = [
    path("", index),
    path("form", form),
    path("json", json_view),
    path("path/<str:name>", named),
    path("file", file),
    path("stream", stream),
    path("boom", boom),
]
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402

app = get_wsgi_application()
