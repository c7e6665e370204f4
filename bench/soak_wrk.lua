-- wrk script for bench/soak.sh: each thread stops after its share of responses (the first script
-- argument, after "--") and then creates the file DIR/wrk-done-ID (DIR: the second argument).
-- wrk's main thread only wakes up at the end of -d or on SIGINT, so the caller sends SIGINT once
-- every thread's file is there. The statuses of all responses are counted and printed as
--   wrk-status STATUS COUNT
-- one line per status, then "wrk-responses N" and "wrk-errors ...".
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  limit = tonumber(args[1]) or 1000
  marker_dir = args[2]
  count = 0
  statuses = {}
end

function response(status, headers, body)
  count = count + 1
  statuses[status] = (statuses[status] or 0) + 1
  if count == limit then
    if marker_dir then
      local f = io.open(marker_dir .. "/wrk-done-" .. tostring(id), "w")
      if f then f:close() end
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, all = 0, {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for status, n in pairs(s) do
      all[status] = (all[status] or 0) + n
      total = total + n
    end
  end
  local keys = {}
  for status in pairs(all) do table.insert(keys, status) end
  table.sort(keys)
  for _, status in ipairs(keys) do
    io.write(string.format("wrk-status %d %d\n", status, all[status]))
  end
  io.write(string.format("wrk-responses %d\n", total))
  io.write(string.format("wrk-errors connect %d read %d write %d status %d timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
