-- wrk script: A2A message/send with a fresh messageId per request.
-- Non-blocking by default; BLOCKING=1 waits for each task to complete.
-- Usage: [BLOCKING=1] wrk -t2 -c64 -d10s --latency -s loadtest/wrk-send.lua http://127.0.0.1:3773/
local counter = 0
local blocking = os.getenv("BLOCKING") == "1" and "true" or "false"
local thread_id = math.random(1, 1e9)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local id = string.format("%d-%d", thread_id, counter)
  local body = '{"jsonrpc":"2.0","id":"' .. id .. '","method":"message/send","params":{"message":{"role":"user","kind":"message","messageId":"m-' .. id .. '","parts":[{"kind":"text","text":"hello"}]},"configuration":{"blocking":' .. blocking .. '}}}'
  return wrk.format(nil, nil, nil, body)
end

local errors = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"error"', 1, true) then
    errors = errors + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non-200 or JSON-RPC error responses (last thread): %d\n", errors))
end
