-- What every wrk script of bench/http.ts shares (loaded by kvs.lua and etcd.lua with dofile): the
-- threads, the responses outside 2xx counted by status, and the one line `WRK_RESULT {json}` printed
-- at the end (requests, duration, exact p50/p90/p99 from wrk's latency histogram, socket errors),
-- which bench/http/wrk.ts reads. The loading script defines init() and request().

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- Responses outside 2xx, by status (a string key: thread:get copies the table to done()).
non2xx = {}

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
