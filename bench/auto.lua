-- A non-streamed chat completion with model "auto": classified, routed, body re-encoded once.
wrk.method = "POST"
wrk.body = '{"model":"auto","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
