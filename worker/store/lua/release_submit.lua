-- Give up a claimed submit (worker/store/work_index.py): drop its entry only while it still
-- holds the claim's lease, so an entry filed again meanwhile (a retry's, the sweeper's) stays.
-- KEYS[1]: the lane's submit schedule; ARGV: job id, the claim's lease end.

local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
