-- wrk script of bench/http.ts: GET or PUT /kvs/key-<random> with a JSON body, against the store or
-- the echo alike.
--   wrk ... -s bench/http/kvs.lua <url> -- <GET|PUT> <key count> <value bytes>
-- GET body: {"causal-metadata": null}; PUT body: {"value": "<value bytes chars>", "causal-metadata": null}.
-- Every request is formatted once at start (one per key), so picking one costs a random number.
-- At the end, prints one line `WRK_RESULT {json}`: requests, duration, exact p50/p99 from wrk's
-- latency histogram, socket errors, and the responses outside 2xx counted by status.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local requests = {}
local count = 0
-- Responses outside 2xx, by status (a string key: thread:get copies the table to done()).
non2xx = {}

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
