-- A deterministic chat completion that is new every time (a cache miss: looked up, then stored).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local prefix, n = "", 0
init = function(args)
  math.randomseed(os.time() + os.clock() * 1e6)
  prefix = tostring(math.random(1, 2147483647))
end
request = function()
  n = n + 1
  local body = '{"model":"bench-llm","temperature":0,"messages":[{"role":"user","content":"hello '
    .. prefix .. " " .. n .. '"}]}'
  return wrk.format(nil, nil, nil, body)
end
