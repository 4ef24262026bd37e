-- wrk script of bench/http.ts: GET or PUT /kvs/key-<random> with a JSON body, against the store or
-- the echo alike.
--   wrk ... -s bench/http/kvs.lua <url> -- <GET|PUT> <key count> <value bytes>
-- GET body: {"causal-metadata": null}; PUT body: {"value": "<value bytes chars>", "causal-metadata": null}.
-- Every request is formatted once at start (one per key), so picking one costs a random number.
-- At the end, prints one line `WRK_RESULT {json}`: requests, duration, exact p50/p99 from wrk's
-- latency histogram, socket errors, and the responses outside 2xx counted by status.

-- setup(), response(), done() and the WRK_RESULT line: result.lua, beside this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

local requests = {}
local count = 0

function init(args)
  local method = args[1] or "GET"
  local keys = tonumber(args[2] or "1000")
  local valueBytes = tonumber(args[3] or "100")
  math.randomseed(os.time() * 1000 + (id or 0))
  local headers = { ["Content-Type"] = "application/json" }
  local body
  if method == "PUT" then
    body = '{"value": "' .. string.rep("v", valueBytes) .. '", "causal-metadata": null}'
  else
    body = '{"causal-metadata": null}'
  end
  for i = 0, keys - 1 do
    requests[i + 1] = wrk.format(method, "/kvs/key-" .. i, headers, body)
  end
  count = keys
end

function request()
  return requests[math.random(count)]
end
