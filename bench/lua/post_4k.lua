-- wrk script for scenario echo-4k: POST a 4096-byte body (keep in sync with bench/harness/scenarios.py).
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 256)
wrk.headers["Content-Type"] = "application/octet-stream"
