-- Write load for bench/outage.py: PUT /api/v1/members/{id}/settings/genai_improvement, each request
-- with a unique Idempotency-Key ("t<thread>-<n>"), random member and value.
--
--   wrk -t C -c C -d Ds --timeout 120s -s bench/outage.lua URL -- OUTDIR TOKEN MEMBERS FIRST_MEMBER
--
-- Run with as many threads as connections: each thread then has ONE connection whose requests are
-- strictly sequential, so every response belongs to the key this thread sent last. Per thread, one
-- tab-separated log OUTDIR/thread-N.tsv (line-buffered):
--   S  key  member  value  sent_at                     a request was generated and sent
--   R  key  status  answered_at  retry_after  content_type  seq  hash  receipt_key  detail
-- A key with an S line and no R line got no answer (the connection broke, or the run ended).
-- Times are CLOCK_REALTIME seconds, the same clock as Python's time.time().

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } cg_timespec;
int clock_gettime(int clk_id, cg_timespec *tp);
]]
local clock = ffi.new("cg_timespec")
local function now()
  ffi.C.clock_gettime(0, clock) -- CLOCK_REALTIME
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

-- setup() and done() run in wrk's main Lua state; request() is also called there once (wrk checks
-- the request it builds) before any thread starts: it must not log anything then.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local log, token, members, first
local sent, pending = 0, nil

function init(args)
  local outdir = args[1]
  token, members, first = args[2], tonumber(args[3]), tonumber(args[4])
  math.randomseed(id * 7919 + 17)
  log = io.open(outdir .. "/thread-" .. id .. ".tsv", "w")
  log:setvbuf("line")
end

local function one_line(text)
  return (text or ""):sub(1, 300):gsub("[\t\r\n]", " ")
end

function request()
  local member = (first or 1) + math.random(0, (members or 1) - 1)
  local value = math.random() < 0.5
  local key = "main"
  if log then
    sent = sent + 1
    key = string.format("t%d-%d", id, sent)
    pending = key
    log:write(string.format("S\t%s\t%d\t%s\t%.6f\n", key, member, tostring(value), now()))
  end
  return wrk.format("PUT", "/api/v1/members/" .. member .. "/settings/genai_improvement", {
    ["Authorization"] = "Bearer " .. (token or "-"),
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key,
  }, value and '{"value": true}' or '{"value": false}')
end

function response(status, headers, body)
  local at = now()
  local key = pending or "?"
  pending = nil
  local retry = headers["retry-after"] or headers["Retry-After"] or ""
  local ctype = headers["content-type"] or headers["Content-Type"] or ""
  local seq, hash, receipt_key, detail = "", "", "", ""
  if status == 200 then
    seq = body:match('"seq"%s*:%s*(%d+)') or ""
    hash = body:match('"hash"%s*:%s*"(%x+)"') or ""
    receipt_key = body:match('"idempotency_key"%s*:%s*"([^"]*)"') or ""
  else
    detail = one_line(body)
  end
  log:write(string.format("R\t%s\t%d\t%.6f\t%s\t%s\t%s\t%s\t%s\t%s\n",
    key, status, at, retry, ctype, seq, hash, receipt_key, detail))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "CG_SUMMARY requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
