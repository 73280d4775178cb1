-- wrk script for scenarios upload-1m and wsgi-echo-1m: POST a 1 MiB (1048576-byte) body (keep in sync with bench/harness/scenarios.py).
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
