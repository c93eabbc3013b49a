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

# Both batch scripts walk ARGV (id, record, …) in chunks of 1000 tasks: the chunk's ids, and which are stored.
_CHUNKS = """for first = 1, #ARGV, 2000 do
  local last = math.min(first + 1999, #ARGV)
  local ids, n = {}, 0
  for i = first, last, 2 do
    n = n + 1
    ids[n] = ARGV[i]
  end
  local known = call('HMGET', KEYS[2], unpack(ids))
"""

ENQUEUE_MANY = (
    """#!lua
-- KEYS: ready, tasks   ARGV: id1, record1, id2, record2, …   Returns how many were new.
-- Same outcome as ENQUEUE per task in order (an id stored already, or earlier in the batch, is
-- skipped), with one HMGET + HSET + LPUSH per chunk: a redis.call per task cost more than the writes.
-- Chunks, because unpack() is bounded by the Lua C stack (8000 values).
local ARGV, unpack, call = ARGV, unpack, redis.call  -- locals: a global lookup per use otherwise
local added = 0
"""
    + _CHUNKS
    + """  local fresh = true
  for j = 1, n do
    if known[j] then fresh = false break end
  end
  -- The usual case, all new: HSET counts n new fields only if no id repeats in the chunk.
  if fresh and call('HSET', KEYS[2], unpack(ARGV, first, last)) == n then
    call('LPUSH', KEYS[1], unpack(ids))
    added = added + n
  else
    -- Only the first copy of each id not stored before (a repeated id that the HSET above
    -- gave its last record gets the first one back).
    local fields, new, k, taken = {}, {}, 0, {}
    for j = 1, n do
      local id = ids[j]
      if not known[j] and not taken[id] then
        taken[id] = true
        k = k + 1
        new[k] = id
        fields[2 * k - 1] = id
        fields[2 * k] = ARGV[first + 2 * j - 1]
      end
    end
    if k > 0 then
      call('HSET', KEYS[2], unpack(fields))
      call('LPUSH', KEYS[1], unpack(new))
    end
    added = added + k
  end
end
return added
"""
)

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


# -- stream engine ----------------------------------------------------------------------------------

STREAM_ENQUEUE = """#!lua
-- KEYS: stream, ids   ARGV: id, record
if redis.call('HSETNX', KEYS[2], ARGV[1], 1) == 1 then
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'r', ARGV[2])
  return 1
end
return 0
"""

STREAM_ENQUEUE_MANY = (
    """#!lua
-- KEYS: stream, ids   ARGV: id1, record1, id2, record2, …   Returns how many were new.
-- As STREAM_ENQUEUE per task in order, with one HMGET + HSET per chunk (see ENQUEUE_MANY); XADD
-- takes one entry per call.
local ARGV, unpack, call = ARGV, unpack, redis.call
local added = 0
"""
    + _CHUNKS
    + """  local fields, k, taken = {}, 0, {}
  for j = 1, n do
    local id = ids[j]
    if not known[j] and not taken[id] then
      taken[id] = true
      k = k + 1
      fields[2 * k - 1] = id
      fields[2 * k] = 1
      call('XADD', KEYS[1], '*', 'id', id, 'r', ARGV[first + 2 * j - 1])
    end
  end
  if k > 0 then
    call('HSET', KEYS[2], unpack(fields))
  end
  added = added + k
end
return added
"""
)

STREAM_DEQUEUE = """#!lua flags=allow-oom
-- KEYS: stream   ARGV: group, consumer, lease_ms, count
-- Expired leases first (XAUTOCLAIM = the visibility timeout), else new entries (XREADGROUP >).
-- Returns a flat list entry id, task id, record, attempts, … .
local entries = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])[2]
local redelivered = #entries > 0
if not redelivered then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
  entries = r and r[1][2] or {}
end
local out = {}
for _, e in ipairs(entries) do
  local fields = e[2]
  if fields then
    local id, record
    for i = 1, #fields, 2 do
      if fields[i] == 'id' then id = fields[i + 1] elseif fields[i] == 'r' then record = fields[i + 1] end
    end
    local attempts = 1
    if redelivered then
      local pending = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
      if pending[1] then attempts = pending[1][4] end
    end
    out[#out + 1] = e[1]
    out[#out + 1] = id
    out[#out + 1] = record
    out[#out + 1] = attempts
  end
end
return out
"""

STREAM_ACK = """#!lua flags=allow-oom
-- KEYS: stream, ids   ARGV: group, entry id, task id
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[3])
return acked
"""

STREAM_NACK = """#!lua flags=allow-oom
-- KEYS: stream   ARGV: group, consumer, entry id, idle_ms
-- Mark the entry idle for longer than the lease: the next XAUTOCLAIM hands it out again.
return #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
"""
