-- The poller's claim (worker/store/job_store.py): the polls due now, each leased until ARGV[3].
-- KEYS[1]: the poll schedule; ARGV: now, limit, lease end, key prefix, default poll token.
-- Returns, for each claimed poll, its job id, its poll token and what the poll needs of the
-- record (status, remote_task_id, deadline_at, poll_count, submitted_at, params: as stored,
-- false where not stored), so a poll that goes on reads nothing more before the API call.

local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local job = ARGV[4] .. ':job:' .. id
  local token = redis.call('HGET', job, 'poll_token')
  if not token and redis.call('EXISTS', job) == 1 then token = ARGV[5] end
  if token then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = redis.call(
      'HMGET', job, 'status', 'remote_task_id', 'deadline_at', 'poll_count', 'submitted_at', 'params')
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
