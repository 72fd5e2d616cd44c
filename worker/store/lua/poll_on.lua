-- A poll that goes on (worker/store/job_store.py, `JobStore.hand_on_poll`): the same compare-and-set
-- write.lua makes for `transitions.poll_on`, with plain arguments instead of one JSON document.
-- KEYS: job, in-flight index, poll schedule.
-- ARGV: job id, expected token, new token, poll count, next poll at, due at, updated at, TTL,
-- remote status (encoded; '' to drop the field, its default).
-- Every value is encoded as the record stores it (JSON), so the hash ends as write.lua leaves it.
-- Returns 1 (applied), 0 (not submitted, or another token: a stale message), -1 (no such job).

local job = KEYS[1]
local held = redis.call('HMGET', job, 'status', 'poll_token')
if not held[1] then
  -- `status` is always stored: without it, no record (or one that is not being polled).
  if redis.call('EXISTS', job) == 0 then return -1 end
  return 0
end
-- A token that is not stored holds its default, 0.
if held[1] ~= '"submitted"' or (held[2] or '0') ~= ARGV[2] then return 0 end

redis.call('HSET', job, 'poll_token', ARGV[3], 'poll_count', ARGV[4], 'next_poll_at', ARGV[5],
  'updated_at', ARGV[7])
if ARGV[9] == '' then
  redis.call('HDEL', job, 'remote_status')
else
  redis.call('HSET', job, 'remote_status', ARGV[9])
end
redis.call('EXPIRE', job, ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
