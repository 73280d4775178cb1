"""Raw ASGI applications, one per benchmark scenario (served as ``bench.apps.<module>:app``)."""
