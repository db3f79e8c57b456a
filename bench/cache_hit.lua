-- The same deterministic chat completion every time (a cache hit after the first).
wrk.method = "POST"
wrk.body = '{"model":"bench-llm","temperature":0,"messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
