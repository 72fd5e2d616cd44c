-- The poller's claim (worker/store/work_index.py), one round trip a tick: the polls due now,
-- then the submits due with the room they leave, interactive before bulk; each claim a lease.
-- KEYS[1]: the poll schedule; KEYS[2], KEYS[3] (optional): the interactive and bulk lanes'
-- submit schedules. ARGV: now, room for polls, room in all, a poll's lease end, a submit's
-- lease end, key prefix, default poll token.
-- Returns {polls, submits}: for each claimed poll its job id, its poll token and what the poll
-- needs of the record (status, remote_task_id, deadline_at, poll_count, submitted_at, params:
-- as stored, false where not stored), so a poll that goes on reads nothing more before the API
-- call; for each claimed submit its job id and its lane's place among the submit schedules
-- (1 or 2). A poll entry whose record is gone, or a submit entry whose job is no longer queued
-- (submitted, cancelled, gone) or is held (a paced batch releases it with a new entry), is
-- dropped instead of claimed.

local now, prefix = ARGV[1], ARGV[6]
local room = tonumber(ARGV[3])
local polls, submits = {}, {}

if tonumber(ARGV[2]) > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
  for _, id in ipairs(ids) do
    local job = prefix .. ':job:' .. id
    local token = redis.call('HGET', job, 'poll_token')
    if not token and redis.call('EXISTS', job) == 1 then token = ARGV[7] end
    if token then
      redis.call('ZADD', KEYS[1], ARGV[4], id)
      polls[#polls + 1] = id
      polls[#polls + 1] = token
      polls[#polls + 1] = redis.call(
        'HMGET', job, 'status', 'remote_task_id', 'deadline_at', 'poll_count', 'submitted_at', 'params')
      room = room - 1
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end

for lane = 2, #KEYS do
  if room <= 0 then break end
  local ids = redis.call('ZRANGEBYSCORE', KEYS[lane], '-inf', now, 'LIMIT', 0, room)
  for _, id in ipairs(ids) do
    local fields = redis.call('HMGET', prefix .. ':job:' .. id, 'status', 'held')
    if fields[1] == '"queued"' and not fields[2] then
      redis.call('ZADD', KEYS[lane], ARGV[5], id)
      submits[#submits + 1] = id
      submits[#submits + 1] = lane - 1
      room = room - 1
    else
      redis.call('ZREM', KEYS[lane], id)
    end
  end
end
return {polls, submits}
