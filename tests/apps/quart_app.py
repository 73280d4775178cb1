"""A Quart app."""

from quart import Quart, request

app = Quart(__name__)


@app.route("/")
async def index():
    return "Hello from Quart"


@app.route("/echo", methods=["POST"])
async def echo():
    return await request.get_json()
