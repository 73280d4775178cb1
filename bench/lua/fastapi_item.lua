-- wrk script for scenario fastapi: POST a JSON item to /items (keep in sync with bench/harness/scenarios.py).
wrk.method = "POST"
wrk.body = '{"name":"widget","price":9.99,"quantity":3,"tags":["red","small","sale"]}'
wrk.headers["Content-Type"] = "application/json"
