-- A batch's credit budget, checked before a submit reaches the API (worker/store/cost_store.py).
-- KEYS: the batch's hash, its reservations (job id -> credits held in flight), the job's
-- group's recent credits. ARGV: job id, default estimate, TTL.
-- Returns 1 (go on: no budget, already reserved, or reserved now) or 0 (refused).
local max = redis.call('HGET', KEYS[1], 'max_credits')
if not max then return 1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 1 end
-- Once refused, always refused: a budget reached stops the batch, even if a job in flight
-- later turns out cheaper than its estimate.
if redis.call('HEXISTS', KEYS[1], 'budget_reached') == 1 then return 0 end
-- This job's estimate: the median of its quality and resolution's recent credits.
local samples = redis.call('LRANGE', KEYS[3], 0, -1)
local estimate = tonumber(ARGV[2])
if #samples > 0 then
  local values = {}
  for i, v in ipairs(samples) do values[i] = tonumber(v) end
  table.sort(values)
  local n = #values
  if n % 2 == 1 then
    estimate = values[(n + 1) / 2]
  else
    estimate = (values[n / 2] + values[n / 2 + 1]) / 2
  end
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'credits_used') or '0')
local flight = tonumber(redis.call('HGET', KEYS[1], 'credits_in_flight') or '0')
-- A tiny tolerance: the totals are kept with HINCRBYFLOAT.
if spent + flight + estimate > tonumber(max) + 1e-9 then
  redis.call('HSET', KEYS[1], 'budget_reached', spent + flight)
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], estimate)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'credits_in_flight', estimate)
return 1
