-- wrk script: each request goes to one of N tenants' hosts (tN.example.com), chosen uniformly
-- at random; N is the script's argument (wrk ... -s rotate.lua URL -- N). When done, prints
-- one JSON line with the counts the benchmark reads. Every request asks the server to close the
-- connection after it: a kept-alive connection stays with the gunicorn worker that accepted it,
-- and a gthread worker that accepted all of them serves alone, half as fast.
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("id", threads)
end

function init(args)
   local n = tonumber(args[1])
   hosts = {}
   for i = 0, n - 1 do
      hosts[i + 1] = "t" .. i .. ".example.com"
   end
   math.randomseed(id * 7919)
end

function request()
   return wrk.format("GET", "/", { Host = hosts[math.random(#hosts)], Connection = "close" })
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
      '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
