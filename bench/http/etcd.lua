-- wrk script of bench/http.ts for etcd's v3 JSON gRPC gateway: the load of kvs.lua (keys
-- key-0..key-<count-1> at random, values of <value bytes> "v"s) in etcd's terms, every request a POST.
--   wrk ... -s bench/http/etcd.lua <etcd client url> -- <GET|PUT> <key count> <value bytes>
-- GET: POST /v3/kv/range {"key": "<base64 key>"}; PUT: POST /v3/kv/put {"key": "<base64 key>", "value": "<base64 value>"}.
-- Every request is formatted once at start (one per key), so picking one costs a random number.
-- At the end, prints one line `WRK_RESULT {json}`, as kvs.lua does.

-- setup(), response(), done() and the WRK_RESULT line: result.lua, beside this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

local requests = {}
local count = 0

-- Lua 5.1 (wrk's LuaJIT) has no base64: standard alphabet, with padding.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function sextet(n)
  return alphabet:sub(n + 1, n + 1)
end

local function base64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = text:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = sextet(math.floor(n / 262144) % 64) .. sextet(math.floor(n / 4096) % 64) ..
      (b and sextet(math.floor(n / 64) % 64) or "=") .. (c and sextet(n % 64) or "=")
  end
  return table.concat(out)
end

function init(args)
  local method = args[1] or "GET"
  local keys = tonumber(args[2] or "1000")
  local valueBytes = tonumber(args[3] or "100")
  math.randomseed(os.time() * 1000 + (id or 0))
  local headers = { ["Content-Type"] = "application/json" }
  local value = base64(string.rep("v", valueBytes))
  for i = 0, keys - 1 do
    local key = base64("key-" .. i)
    if method == "PUT" then
      requests[i + 1] = wrk.format("POST", "/v3/kv/put", headers, '{"key": "' .. key .. '", "value": "' .. value .. '"}')
    else
      requests[i + 1] = wrk.format("POST", "/v3/kv/range", headers, '{"key": "' .. key .. '"}')
    end
  end
  count = keys
end

function request()
  return requests[math.random(count)]
end
