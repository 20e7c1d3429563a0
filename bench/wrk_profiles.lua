-- wrk script for `make bench`: GET /v1/profiles/<random user>?days=30 (the
-- query string BENCH_QUERY when set; or a fixed path), and a JSON summary
-- with latency percentiles on done().
-- Environment: BENCH_USERS = file with one user id per line (absent = fixed
-- path BENCH_PATH), BENCH_SUFFIX = a sub-resource of the profile
-- ("/affinities"), BENCH_OUT = where done() writes its JSON summary,
-- BENCH_DELAY_MS = when set, each connection waits this long after a
-- response before its next request (a paced load instead of a saturating
-- one; wrk's latency figures exclude the wait).
local users = {}
local fixed = os.getenv("BENCH_PATH") or "/healthz"
local query = os.getenv("BENCH_QUERY") or ""
-- BENCH_SUFFIX: appended to /v1/profiles/<user> (e.g. "/affinities")
local suffix = os.getenv("BENCH_SUFFIX") or ""
if query == "" then query = "days=30" end
local ufile = os.getenv("BENCH_USERS")
if ufile and ufile ~= "" then
  for line in io.lines(ufile) do
    if #line > 0 then users[#users + 1] = line end
  end
end

local function urlenc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

-- BENCH_BODY_FILE: POST /v1/profiles/<random user>/rank with this JSON body
-- (the rank step) instead of the GET.
local body = nil
local bfile = os.getenv("BENCH_BODY_FILE")
if bfile and bfile ~= "" then
  local f = assert(io.open(bfile, "rb"))
  body = f:read("*a")
  f:close()
end

local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause and pause > 0 then
  delay = function() return pause end
end

request = function()
  if #users > 0 then
    local u = users[math.random(#users)]
    if body then
      return wrk.format("POST", "/v1/profiles/" .. urlenc(u) .. "/rank",
                        {["Content-Type"] = "application/json"}, body)
    end
    return wrk.format("GET", "/v1/profiles/" .. urlenc(u) .. suffix .. "?" .. query)
  end
  return wrk.format("GET", fixed)
end

done = function(summary, latency, requests)
  local out = os.getenv("BENCH_OUT")
  local f = out and io.open(out, "w") or io.stdout
  local pcts = {0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 99, 99.5, 99.9, 99.99, 100}
  local dist = {}
  for _, p in ipairs(pcts) do
    local v
    if p == 0 then v = latency.min elseif p == 100 then v = latency.max else v = latency:percentile(p) end
    dist[#dist + 1] = string.format("[%g,%.1f]", p, v)
  end
  local e = summary.errors
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%.1f,"p99_us":%.1f,' ..
    '"p999_us":%.1f,"mean_us":%.1f,"max_us":%.1f,"dist":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max,
    table.concat(dist, ",")))
  if f ~= io.stdout then f:close() end
end
