-- wrk script of bench/http.ts for etcd's v3 JSON gRPC gateway: the load of kvs.lua (keys
-- key-0..key-<count-1> at random, values of <value bytes> "v"s) in etcd's terms, every request a POST.
--   wrk ... -s bench/http/etcd.lua <etcd client url> -- <GET|PUT> <key count> <value bytes>
-- GET: POST /v3/kv/range {"key": "<base64 key>"}; PUT: POST /v3/kv/put {"key": "<base64 key>", "value": "<base64 value>"}.
-- Every request is formatted once at start (one per key), so picking one costs a random number.
-- At the end, prints one line `WRK_RESULT {json}`, as kvs.lua does.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local requests = {}
local count = 0
-- Responses outside 2xx, by status (a string key: thread:get copies the table to done()).
non2xx = {}

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

function response(status, headers, body)
  if status < 200 or status > 299 then
    local key = tostring(status)
    non2xx[key] = (non2xx[key] or 0) + 1
  end
end

function done(summary, latency, _)
  local statuses = {}
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("non2xx")
    if counts then
      for status, n in pairs(counts) do
        total[status] = (total[status] or 0) + n
      end
    end
  end
  for status, n in pairs(total) do
    table.insert(statuses, string.format('"%s":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"durationUs":%d,"bytes":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%.1f,' ..
    '"socketErrors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"statusErrors":%d,"non2xx":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status, table.concat(statuses, ",")))
end
