-- The job store's one write (worker/store/job_store.py): a compare-and-set on the job's hash that keeps
-- the indexes, the API slots, the dead letters and the batch's counters in line with it.
-- KEYS: job, in-flight index, dead letters, API slots, poll schedule; ARGV[1]: the write (JSON).
-- Returns 1 (applied), 2 (applied, and it finished the batch's last job), 0 (expectation not met),
-- -1 (no such job), -2 (no API slot); or, when it released a paced batch's next held job,
-- {1 or 2, that job's id, its lane field}.

local a = cjson.decode(ARGV[1])
local job = KEYS[1]
local exists = redis.call('EXISTS', job) == 1
if a.create then
  if exists then return 0 end
elseif not exists then
  return -1
end
-- A field that is not stored holds its default (a.defaults).
for f, v in pairs(a.expect) do
  if (redis.call('HGET', job, f) or a.defaults[f]) ~= v then return 0 end
end

-- An API slot, taken before a submit; refused (-2) while the cap is reached, and then the job
-- is due again after its wait, so the sweeper leaves it alone.
if a.slot_limit then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', a.now)
  local held = redis.call('ZSCORE', KEYS[4], a.job_id)
  if not held and redis.call('ZCARD', KEYS[4]) >= a.slot_limit then
    if a.due_if_no_slot then redis.call('ZADD', KEYS[2], a.due_if_no_slot, a.job_id) end
    return -2
  end
  redis.call('ZADD', KEYS[4], a.slot_expires, a.job_id)
end
if a.slot_expires and not a.slot_limit then
  redis.call('ZADD', KEYS[4], 'XX', a.slot_expires, a.job_id)
end

-- The batch's counters follow the job's status; the write that finishes its last job gets 2.
local result = 1
local released = nil
local batch = a.set.batch_id or (exists and redis.call('HGET', job, 'batch_id'))
if a.set.status and batch and batch ~= 'null' then
  local key = a.prefix .. ':batch:' .. cjson.decode(batch)
  local new = cjson.decode(a.set.status)
  local old = exists and redis.call('HGET', job, 'status')
  if old then old = cjson.decode(old) end
  if old ~= new then
    if old then redis.call('HINCRBY', key, old, -1) end
    redis.call('HINCRBY', key, new, 1)
    if a.terminal[new] and not (old and a.terminal[old]) then
      -- Its credits join the batch's total; the estimate its budget held in flight is freed.
      if a.set.credits_used and a.set.credits_used ~= 'null' then
        redis.call('HINCRBYFLOAT', key, 'credits_used', a.set.credits_used)
      end
      local held_credits = redis.call('HGET', key .. ':reserved', a.job_id)
      if held_credits then
        redis.call('HINCRBYFLOAT', key, 'credits_in_flight', -tonumber(held_credits))
        redis.call('HDEL', key .. ':reserved', a.job_id)
      end
      local finished = redis.call('HINCRBY', key, 'finished', 1)
      local total = tonumber(redis.call('HGET', key, 'total') or '-1')
      if finished >= total and redis.call('HSETNX', key, 'completed_at', a.now) == 1 then
        result = 2
      end
      -- A paced batch (bulk --concurrency): a job that was running ends, so the next held one
      -- goes; ids that are no longer held and queued (cancelled, expired) are passed over.
      if redis.call('HEXISTS', key, 'pace') == 1 and not redis.call('HGET', job, 'held') then
        for _ = 1, 100 do
          local next_id = redis.call('LPOP', key .. ':held')
          if not next_id then break end
          local other = a.prefix .. ':job:' .. next_id
          local other_status = redis.call('HGET', other, 'status')
          if redis.call('HGET', other, 'held') and other_status == '"queued"' then
            redis.call('HDEL', other, 'held')
            redis.call('HSET', other, 'updated_at', a.now)
            redis.call('ZADD', KEYS[2], a.now, next_id)
            released = {next_id, redis.call('HGET', other, 'lane') or false}
            break
          end
        end
      end
    end
    redis.call('EXPIRE', key, a.ttl)
  end
end

-- The listing indexes (worker/store/job_index.py): sorted sets of job ids scored by creation
-- time: every job, one per status, one per batch. Each entry moves with the status in this
-- same write; a set is trimmed of entries created more than the record TTL ago whenever it is
-- added to, and expires a TTL after its last addition, so none outgrows the records.
if a.set.status then
  local old_status = exists and redis.call('HGET', job, 'status')
  if old_status ~= a.set.status then
    local created = a.set.created_at or redis.call('HGET', job, 'created_at') or '0'
    local horizon = '(' .. (a.now - a.ttl)
    local function put(index)
      redis.call('ZREMRANGEBYSCORE', index, '-inf', horizon)
      redis.call('ZADD', index, created, a.job_id)
      redis.call('EXPIRE', index, a.ttl)
    end
    local idx = a.prefix .. ':idx:'
    if old_status then
      redis.call('ZREM', idx .. 'status:' .. cjson.decode(old_status), a.job_id)
    end
    put(idx .. 'status:' .. cjson.decode(a.set.status))
    if not exists then
      put(idx .. 'jobs')
      if batch and batch ~= 'null' then put(idx .. 'batch:' .. cjson.decode(batch)) end
    end
  end
end

-- Fields set back to their default are dropped, not stored.
local flat, gone = {}, {}
for f, v in pairs(a.set) do
  if a.drop[f] then
    gone[#gone + 1] = f
  else
    flat[#flat + 1] = f
    flat[#flat + 1] = v
  end
end
if #flat > 0 then redis.call('HSET', job, unpack(flat)) end
if #gone > 0 and exists then redis.call('HDEL', job, unpack(gone)) end
redis.call('EXPIRE', job, a.ttl)
if a.due_at then redis.call('ZADD', KEYS[2], a.due_at, a.job_id) end
-- Poller mode: a new job's submit, filed in its lane's submit schedule by the creating write.
if a.submit_schedule then redis.call('ZADD', a.submit_schedule, a.due_at, a.job_id) end
if a.settled then redis.call('ZREM', KEYS[2], a.job_id) end
-- The poll schedule follows the job's next_poll_at (null: no more polls).
if a.set.next_poll_at then
  local at = cjson.decode(a.set.next_poll_at)
  if at == cjson.null then
    redis.call('ZREM', KEYS[5], a.job_id)
  else
    redis.call('ZADD', KEYS[5], at, a.job_id)
  end
end
if a.free_slot then redis.call('ZREM', KEYS[4], a.job_id) end
if a.dead_letter then redis.call('HSET', KEYS[3], a.job_id, a.dead_letter) end
if a.revive then redis.call('HDEL', KEYS[3], a.job_id) end
if released then return {result, released[1], released[2]} end
return result
