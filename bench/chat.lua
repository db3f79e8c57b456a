-- A non-streamed chat completion naming the model explicitly (the body lmwatch forwards unchanged).
wrk.method = "POST"
wrk.body = '{"model":"bench-llm","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
