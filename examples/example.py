"""An app run from its own file, as the introduction shows it: `python example.py`.

    cd examples && python example.py

The app is the introduction's first one (hello.py, headers as a list of lists:
[b'content-type', b'text/plain']).
"""

import ferricorn
from hello import app  # noqa: F401  (served as "example:app")

if __name__ == "__main__":
    ferricorn.run("example:app", host="127.0.0.1", port=8000, log_level="info")
