-- wrk script of benches/raft_bench.py: persistent instances (ephemeral=false), which a
-- Nacos-compatible server must keep durably (Nacre: its Raft log).
--   BENCH_MODE   register (default): POST a new instance per request;
--                update: PUT a new weight on one of BENCH_KEYS existing instances.
--   BENCH_OFFSET first key; BENCH_KEYS keys cycled over (default 1e9: all distinct)
--   NACOS_TOKEN  accessToken, when set
--   WRK_THREADS  threads wrk runs (keys are interleaved between them)
--   BENCH_MAX    stop each thread after this many responses (0: run for -d), and
--                create the file BENCH_DONE_FILE then (wrk itself waits out -d: the
--                driver interrupts it)
-- Keys map to 127.a.b.c addresses (data only; a server that probes them touches
-- loopback only), 100 services bench-db-NNN. Prints one RESULT line.
local token = os.getenv("NACOS_TOKEN") or ""
local mode = os.getenv("BENCH_MODE") or "register"
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000000000")
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local max = tonumber(os.getenv("BENCH_MAX") or "0")
local answered = 0
local created = 0
local n = 0

function setup(thread)
  thread:set("tid", created)
  created = created + 1
end

local function ip_for(k)
  return string.format("127.%d.%d.%d", math.floor(k / 62500) % 254 + 1,
    math.floor(k / 250) % 250 + 1, k % 250 + 1)
end

function request()
  local k = offset + (tid + n * nthreads) % keys
  n = n + 1
  local q = "serviceName=DEFAULT_GROUP%40%40bench-db-" .. string.format("%03d", k % 100)
    .. "&ip=" .. ip_for(k) .. "&port=5432&clusterName=DEFAULT&ephemeral=false"
  if token ~= "" then q = q .. "&accessToken=" .. token end
  if mode == "update" then
    return wrk.format("PUT", "/nacos/v1/ns/instance?" .. q .. "&weight=" .. (n % 100 + 1))
  end
  return wrk.format("POST", "/nacos/v1/ns/instance?" .. q .. "&weight=1.0&enable=true&healthy=true")
end

local done_file = os.getenv("BENCH_DONE_FILE") or ""

function response(status, headers, body)
  answered = answered + 1
  if max > 0 and answered >= max then
    if done_file ~= "" then
      local f = io.open(done_file, "w")
      if f then f:close() end
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
