"""Must NOT type-check: `make lint` runs mypy on it and expects these errors, so the typed
keywords of `run()` cannot silently become `**kwargs: Any` again."""

import ferricorn

ferricorn.run("main:app", prot=8000)  # a misspelt option
ferricorn.run("main:app", port="8000")  # a str where an int is expected
ferricorn.run("main:app", loop="trio")  # not one of the choices
