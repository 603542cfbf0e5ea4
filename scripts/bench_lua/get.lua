-- wrk script for scripts/bench.py: the same GET (or etcd range POST) on every request.
--
--   wrk ... -s get.lua URL -- [BODY]
--
-- With BODY the request is a POST of that body (etcd's JSON gateway reads by POST /v3/kv/range).
-- No response() hook: wrk then skips handing bodies (up to a 1,000-instance list) to Lua, so
-- failures are wrk's own counts: status > 399 and socket errors. done() prints "WRKJSON {...}".

function init(args)
   if args[1] and args[1] ~= "" then
      wrk.method = "POST"
      wrk.body = args[1]
      wrk.headers["Content-Type"] = "application/json"
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"durationUs":%d,"requests":%d,"bytes":%d,"ok":%d,"non2xx":%d,"codes":"",'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.duration, summary.requests, summary.bytes, math.max(0, summary.requests - e.status), e.status,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
