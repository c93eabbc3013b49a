"""Lua scripts: one round trip per queue operation, atomic per partition.

Shebang flags (Redis >= 7) decide what happens at ``maxmemory`` under ``noeviction``:
``enqueue`` is refused *before* it runs (nothing half-written, the client gets OOM);
the consumer side is ``allow-oom`` so consumers keep draining a full queue.
Deadlines use the server clock (``TIME``), so producers on other machines cannot skew leases.
"""

ENQUEUE = """#!lua
-- KEYS: ready, tasks   ARGV: id, record
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

ENQUEUE_MANY = """#!lua
-- KEYS: ready, tasks   ARGV: id1, record1, id2, record2, …   Returns how many were new.
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    added = added + 1
  end
end
return added
"""

DEQUEUE = """#!lua flags=allow-oom
-- KEYS: ready, inflight, tasks, attempts   ARGV: lease_ms, max_count
-- Returns a flat list id, record, attempts, … . Ids whose record is gone (evicted, or acked
-- while requeued) are dropped: nothing left to deliver.
local t = redis.call('TIME')
local deadline = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local out = {}
local pops = 0
while #out < want * 3 and pops < want + 64 do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  pops = pops + 1
  local record = redis.call('HGET', KEYS[3], id)
  if record then
    redis.call('ZADD', KEYS[2], deadline, id)
    out[#out + 1] = id
    out[#out + 1] = record
    out[#out + 1] = redis.call('HINCRBY', KEYS[4], id, 1)
  end
end
return out
"""

ACK = """#!lua flags=allow-oom
-- KEYS: inflight, tasks, attempts   ARGV: id
-- The record is deleted even when the lease had expired: the work is done, and a copy
-- requeued meanwhile is then dropped by DEQUEUE instead of being delivered again.
local held = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return held
"""

NACK = """#!lua flags=allow-oom
-- KEYS: ready, inflight   ARGV: id
-- Back to the consumer end of the list so it is retried next.
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

REQUEUE_EXPIRED = """#!lua flags=allow-oom
-- KEYS: ready, inflight   ARGV: limit
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then
  redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('RPUSH', KEYS[1], unpack(ids))
end
return #ids
"""
