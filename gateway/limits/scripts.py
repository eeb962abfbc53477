"""The two Lua scripts of the Redis store. Each runs atomically in Redis, on Redis's clock (so
replicas whose clocks differ still share one minute), and sets an expiry on every key it writes.

ARGV[1] is the lease of a concurrency slot (ms), ARGV[2] the request's slot holder, then four
values per key: its kind (r: a bucket refilled over a minute, c: concurrent slots, m: a month's
budget), its limit, a cost (admit) or a correction (settle), and the month key's expiry (ms).
"""

from __future__ import annotations

ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local holder = ARGV[2]
local refused, wait = 0, 0
local state, out = {}, {}
for i = 1, #KEYS do
  local kind, limit, cost = ARGV[i * 4 - 1], tonumber(ARGV[i * 4]), tonumber(ARGV[i * 4 + 1])
  local key = KEYS[i]
  local left, reset = 0, 0
  if kind == 'r' then
    local rate = limit / 60000
    local v = redis.call('HMGET', key, 't', 'u')
    local tokens = tonumber(v[1]) or limit
    local updated = tonumber(v[2]) or now
    tokens = math.min(limit, tokens + math.max(0, now - updated) * rate)
    state[i] = tokens
    local need = math.min(cost, limit)
    if tokens < need and refused == 0 then refused, wait = i, (need - tokens) / rate end
    left, reset = tokens, (limit - tokens) / rate
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local held = redis.call('ZCARD', key)
    state[i] = held
    if held >= limit and refused == 0 then refused, wait = i, 1000 end
    left = limit - held
  else
    local used = tonumber(redis.call('GET', key)) or 0
    state[i] = used
    if used + cost > limit and refused == 0 then refused, wait = i, -1 end
    left = limit - used
  end
  out[i] = {left, reset}
end
if refused == 0 then
  for i = 1, #KEYS do
    local kind, limit, cost = ARGV[i * 4 - 1], tonumber(ARGV[i * 4]), tonumber(ARGV[i * 4 + 1])
    local key = KEYS[i]
    if kind == 'r' then
      local rate = limit / 60000
      local tokens = state[i] - cost
      redis.call('HSET', key, 't', tokens, 'u', now)
      redis.call('PEXPIRE', key, math.ceil((limit - tokens) / rate) + 1000)
      out[i] = {tokens, (limit - tokens) / rate}
    elseif kind == 'c' then
      redis.call('ZADD', key, now + lease, holder)
      redis.call('PEXPIRE', key, lease)
      out[i] = {limit - state[i] - 1, 0}
    else
      local used = redis.call('INCRBY', key, cost)
      redis.call('PEXPIRE', key, tonumber(ARGV[i * 4 + 2]))
      out[i] = {limit - used, 0}
    end
  end
end
local reply = {refused, math.ceil(wait)}
for i = 1, #KEYS do
  reply[#reply + 1] = math.floor(out[i][1])
  reply[#reply + 1] = math.ceil(out[i][2])
end
return reply
"""

SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = ARGV[2]
for i = 1, #KEYS do
  local kind, limit, back = ARGV[i * 4 - 1], tonumber(ARGV[i * 4]), tonumber(ARGV[i * 4 + 1])
  local key = KEYS[i]
  if kind == 'r' then
    local rate = limit / 60000
    local v = redis.call('HMGET', key, 't', 'u')
    local tokens = tonumber(v[1]) or limit
    local updated = tonumber(v[2]) or now
    tokens = math.min(limit, tokens + math.max(0, now - updated) * rate + back)
    redis.call('HSET', key, 't', tokens, 'u', now)
    redis.call('PEXPIRE', key, math.ceil((limit - tokens) / rate) + 1000)
  elseif kind == 'c' then
    redis.call('ZREM', key, holder)
  elseif redis.call('EXISTS', key) == 1 then
    if redis.call('DECRBY', key, back) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end
return 1
"""
