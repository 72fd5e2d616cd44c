-- The poller's claim of due submits (worker/store/work_index.py): interactive first, then bulk
-- with the room left, each leased until ARGV[3] (a lost poller's claims come due again then).
-- KEYS: the interactive lane's submit schedule, then the bulk lane's; ARGV: now, limit, lease
-- end, key prefix. An entry whose job is no longer queued (submitted, cancelled, gone) or is
-- held (a paced batch releases it with a new entry) is dropped instead of claimed.
-- Returns, for each claimed submit, its job id and its lane's place in KEYS (1 or 2).

local room = tonumber(ARGV[2])
local out = {}
for lane, key in ipairs(KEYS) do
  if room <= 0 then break end
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'LIMIT', 0, room)
  for _, id in ipairs(ids) do
    local fields = redis.call('HMGET', ARGV[4] .. ':job:' .. id, 'status', 'held')
    if fields[1] == '"queued"' and not fields[2] then
      redis.call('ZADD', key, ARGV[3], id)
      out[#out + 1] = id
      out[#out + 1] = lane
      room = room - 1
    else
      redis.call('ZREM', key, id)
    end
  end
end
return out
