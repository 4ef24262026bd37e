-- wrk script of bench/load-keys.ts: PUT key-<n> for n = 0 .. KVS_KEYS-1, once each, acknowledged.
-- One connection per thread, so a thread's one request in flight is the one a response answers:
-- thread t writes keys t, t+T, t+2T, ... (T threads) and moves to its next key only on a 2xx;
-- a 503 (or any other status) sends the same key again, and so does wrk after it reconnects.
-- Threads are dealt round-robin over the nodes of KVS_ADDRS. A thread that is done writes
-- KVS_DONE_DIR/<id> ("acked retries status:count ...") and stops; bench/load-keys.ts ends wrk
-- (SIGINT) once every thread has.
-- Environment: KVS_ADDRS (host:port,...), KVS_KEYS, KVS_THREADS, KVS_VALUE_BYTES, KVS_DONE_DIR.

local threadCount = 0

function setup(thread)
  local addrs = {}
  for a in string.gmatch(os.getenv("KVS_ADDRS"), "[^,]+") do table.insert(addrs, a) end
  local address = addrs[(threadCount % #addrs) + 1]
  local host, port = string.match(address, "^(.+):(%d+)$")
  thread.addr = wrk.lookup(host, port)[1]
  thread:set("id", threadCount)
  thread:set("target", address)
  threadCount = threadCount + 1
end

function init(args)
  keys = tonumber(os.getenv("KVS_KEYS"))
  step = tonumber(os.getenv("KVS_THREADS"))
  doneDir = os.getenv("KVS_DONE_DIR")
  n = id
  acked = 0
  retries = 0
  statuses = {}
  finished = false
  headers = { ["content-type"] = "application/json", ["host"] = target }
  body = '{"value":"' .. string.rep("x", tonumber(os.getenv("KVS_VALUE_BYTES"))) .. '","causal-metadata":null}'
  idle = wrk.format("GET", "/status/ready", { ["host"] = target })
end

local function finish()
  if finished then return end
  finished = true
  local line = acked .. " " .. retries
  for status, count in pairs(statuses) do line = line .. " " .. status .. ":" .. count end
  local f = io.open(doneDir .. "/" .. id, "w")
  f:write(line .. "\n")
  f:close()
  wrk.thread:stop()
end

function request()
  if n >= keys then
    finish()
    return idle
  end
  return wrk.format("PUT", "/kvs/key-" .. n, headers, body)
end

function response(status, hdrs, resBody)
  if finished then return end
  if status >= 200 and status < 300 then
    acked = acked + 1
    n = n + step
  else
    retries = retries + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
  if n >= keys then finish() end
end
