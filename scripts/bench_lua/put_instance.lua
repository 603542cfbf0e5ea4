-- wrk script for scripts/bench.py: PUT a distinct ~300-byte instance record on every request.
--
--   wrk ... -s put_instance.lua URL -- PREFIX [QUOTA] [FORMAT] [STOP_FILE]
--
-- PREFIX makes the run's records distinct from every other run's; each wrk thread numbers its
-- own requests, so no two requests of a run carry the same id or url. With QUOTA, a thread stops
-- after generating that many requests (the scale stage registers an exact set of ids; the
-- requests it re-sends then are upserts of the last one, never new records) and writes STOP_FILE,
-- so bench.py can end wrk early (wrk sleeps out its -d otherwise). FORMAT "etcd" wraps
-- the same record bytes in an etcd v3 JSON-gateway put ({"key", "value"} in base64); "fleet"
-- spreads the records over 1,000 slugs (svc-0 .. svc-999), tagged prod (even n) or dev (odd n).
-- The record layout is the same as record_body() in scripts/bench.py: keep them in step.
-- done() prints one line "WRKJSON {...}" that bench.py parses.

local RECORD_BYTES = 300
local FLEET_SLUGS = 1000

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

tid = 0
ok = 0
bad = 0
codes = ""
local counter = 0
local prefix = "w"
local quota = nil
local format = "registry"
local stop_file = nil
local stopped = false
local statuses = {}

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64 = {}
for i = 1, 64 do b64[i - 1] = b64chars:sub(i, i) end

local function base64(data)
   local out, n = {}, #data
   for i = 1, n - 2, 3 do
      local a, b, c = data:byte(i, i + 2)
      local v = a * 65536 + b * 256 + c
      out[#out + 1] = b64[math.floor(v / 262144)] .. b64[math.floor(v / 4096) % 64]
         .. b64[math.floor(v / 64) % 64] .. b64[v % 64]
   end
   local rest = n % 3
   if rest == 1 then
      local v = data:byte(n) * 65536
      out[#out + 1] = b64[math.floor(v / 262144)] .. b64[math.floor(v / 4096) % 64] .. "=="
   elseif rest == 2 then
      local a, b = data:byte(n - 1, n)
      local v = a * 65536 + b * 256
      out[#out + 1] = b64[math.floor(v / 262144)] .. b64[math.floor(v / 4096) % 64] .. b64[math.floor(v / 64) % 64] .. "="
   end
   return table.concat(out)
end

function record_body(p, t, n)
   local name = p .. "-" .. t .. "-" .. n
   local slug, first_tag = "bench-" .. p, "bench"
   if format == "fleet" then
      slug = "svc-" .. (n % FLEET_SLUGS)
      if n % 2 == 0 then first_tag = "prod" else first_tag = "dev" end
   end
   local head = '{"id":"i-' .. name .. '","url":"http://' .. name .. '.bench.internal:8080/api/v1/items",'
      .. '"slug":"' .. slug .. '","tags":["' .. first_tag .. '","generated","tier-backend","zone-a"],'
      .. '"deploymentId":"depl-' .. name .. '","nodeUrl":"http://node-a.bench.internal:11337","details":"'
   local tail = '"}'
   local pad = RECORD_BYTES - #head - #tail
   if pad < 0 then pad = 0 end
   return head .. string.rep("x", pad) .. tail
end

function init(args)
   prefix = args[1] or "w"
   if args[2] and args[2] ~= "" and args[2] ~= "0" then quota = tonumber(args[2]) end
   format = args[3] or "registry"
   if args[4] and args[4] ~= "" then stop_file = args[4] end
   if format == "etcd" then
      wrk.method = "POST"
   else
      wrk.method = "PUT"
   end
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local n = counter
   if quota and counter > quota then
      if not stopped then
         stopped = true
         if stop_file then
            local f = io.open(stop_file, "w")
            if f then f:write("sent\n"); f:close() end
         end
         wrk.thread:stop()
      end
      n = quota
   end
   local body = record_body(prefix, tid, n)
   if format == "etcd" then
      body = '{"key":"' .. base64("/bench/" .. prefix .. "-" .. tid .. "-" .. n) .. '","value":"' .. base64(body) .. '"}'
   end
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      bad = bad + 1
      statuses[status] = (statuses[status] or 0) + 1
      local parts = {}
      for code, count in pairs(statuses) do table.insert(parts, code .. ":" .. count) end
      codes = table.concat(parts, ",")
   end
end

function done(summary, latency, requests)
   local ok_total, bad_total, code_list = 0, 0, {}
   for _, thread in ipairs(threads) do
      ok_total = ok_total + (thread:get("ok") or 0)
      bad_total = bad_total + (thread:get("bad") or 0)
      local c = thread:get("codes")
      if c and c ~= "" then table.insert(code_list, c) end
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"durationUs":%d,"requests":%d,"bytes":%d,"ok":%d,"non2xx":%d,"codes":"%s",'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.duration, summary.requests, summary.bytes, ok_total, bad_total, table.concat(code_list, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
