-- The request budget of one API key and its pause on 429, in one atomic step
-- (see imageq/worker/policy/request_budget.py, which this mirrors, and docs/rate-limits.md).
-- Time is Redis's own (TIME), so every worker on every host reads the same clock.
-- KEYS[1]: the key's state hash (tat, pause_until, strikes, probe, probe_until, and lost:
--          how many booked turns came too late and were not used)
-- KEYS[2]: booked turns, a sorted set of requester -> when its turn is
-- KEYS[3]: the waiting line, a sorted set of requester -> when it first found no turn near
-- ARGV[1]: "acquire" | "pause" | "probe_ok" | "probe_off"
--   acquire: ARGV[2] requester, [3] interval_s (0: no budget), [4] allowance, [5] horizon_s,
--            [6] probe_lease_s, [7] ttl_s, [8] late_s (how late a booked turn may still be used)
--     -> {allowed 0|1, wait_s, reason, probe 0|1[, late_s: how late a booked turn is taken]}
--     A request with no turn within the horizon joins the waiting line and is told to come
--     back when the turns for those ahead of it are booked, so a long queue of submits asks
--     about twice each, not once per horizon.
--   pause:   ARGV[2] retry_after_s (-1: none), [3] base_s, [4] max_s, [5] ttl_s -> {pause_s}
--   probe_ok: ends the probe phase; the full rate resumes -> {}
--   probe_off: the probe was not sent after all; the next request may probe -> {}
--   retake: as acquire, for a request that was not ready until too long after its turn (the
--            turn is counted as lost)
local key, booked, line = KEYS[1], KEYS[2], KEYS[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local op = ARGV[1]
if op == 'retake' then
  redis.call('HINCRBY', key, 'lost', 1)
  op = 'acquire'
end

if op == 'pause' then
  local state = redis.call('HMGET', key, 'pause_until', 'strikes')
  local pause_until = tonumber(state[1] or '0')
  local strikes = tonumber(state[2] or '0')
  local retry_after, base, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  -- A 429 while a pause is on came from a request sent before it: it may lengthen the pause,
  -- but is no new strike (else a burst of in-flight 429s would double the pause many times).
  local striking = pause_until <= now
  local pause
  if retry_after >= 0 then
    pause = math.min(retry_after, most)
  else
    -- Without Retry-After: the base, doubled for each 429 in a row before this one (an
    -- in-flight 429 gets the length of the pause already on, not a longer one).
    local doublings = strikes
    if not striking then doublings = math.max(strikes - 1, 0) end
    pause = math.min(base * 2 ^ doublings, most)
  end
  local ends = math.max(pause_until, now + pause)
  if striking then
    redis.call('HSET', key, 'strikes', strikes + 1)
  end
  redis.call('HSET', key, 'pause_until', tostring(ends), 'probe', '1', 'probe_until', '0',
    'tat', tostring(ends))
  redis.call('DEL', booked, line)
  redis.call('EXPIRE', key, tonumber(ARGV[5]))
  return {tostring(ends - now)}
end

if op == 'probe_ok' then
  redis.call('HSET', key, 'probe', '0', 'strikes', '0')
  return {}
end

if op == 'probe_off' then
  redis.call('HSET', key, 'probe_until', '0')
  return {}
end

local requester = ARGV[2]
local interval, allowance, horizon = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HMGET', key, 'pause_until', 'probe', 'probe_until', 'tat')
local pause_until = tonumber(state[1] or '0')
if pause_until > now then
  return {0, tostring(pause_until - now), 'pause', 0}
end
if state[2] == '1' then
  local lease_until = tonumber(state[3] or '0')
  if lease_until > now then
    return {0, tostring(lease_until - now), 'probe', 0}
  end
  -- Past the probe the rate resumes at once, but without a burst on top.
  redis.call('HSET', key, 'probe_until', tostring(now + tonumber(ARGV[6])),
    'tat', tostring(now + allowance * interval))
  return {1, '0', 'probe', 1}
end
if interval <= 0 then
  return {1, '0', 'free', 0}
end
local turn = redis.call('ZSCORE', booked, requester)
if turn then
  turn = tonumber(turn)
  if turn > now + 0.005 then
    return {0, tostring(turn - now), 'booked', 0}
  end
  redis.call('ZREM', booked, requester)
  -- A few ms early is the countdown's precision. Up to `late_s` late (the caller holds back
  -- enough of the burst for that) the turn is still this request's; later, sending it would
  -- crowd the turns after it, so the turn is lost and the request asks afresh.
  if now <= turn + tonumber(ARGV[8]) then
    return {1, '0', 'booked', 0, tostring(now - turn)}
  end
  redis.call('HINCRBY', key, 'lost', 1)
end
local tat = math.max(tonumber(state[4] or '0'), now)
local new_tat = tat + interval
local ahead = new_tat - now - allowance * interval
if ahead <= 0 then
  redis.call('HSET', key, 'tat', tostring(new_tat))
  redis.call('EXPIRE', key, tonumber(ARGV[7]))
  redis.call('ZREM', line, requester)
  return {1, '0', 'budget', 0}
end
if ahead <= horizon then
  redis.call('HSET', key, 'tat', tostring(new_tat))
  redis.call('ZADD', booked, now + ahead, requester)
  -- Turns nobody came back for (a worker died) are forgotten after a minute.
  redis.call('ZREMRANGEBYSCORE', booked, '-inf', now - 60)
  redis.call('EXPIRE', booked, tonumber(ARGV[7]))
  redis.call('ZREM', line, requester)
  return {0, tostring(ahead), 'booked', 0}
end
redis.call('ZADD', line, 'NX', now, requester)
redis.call('ZREMRANGEBYSCORE', line, '-inf', now - 600)
redis.call('EXPIRE', line, tonumber(ARGV[7]))
local place = redis.call('ZRANK', line, requester)
return {0, tostring(ahead - horizon + place * interval), 'budget', 0}
