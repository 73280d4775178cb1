"""Raw ASGI test applications served by the end-to-end tests (imported as `apps.<name>`)."""
