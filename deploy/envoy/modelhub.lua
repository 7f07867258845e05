-- ModelHub's routing filter (envoy.filters.http.lua on the ingress listener).
--
-- For Open Inference Protocol gRPC calls it reads the model name where the request has it
-- (the message's first fields: model_name = 1, model_version = 2, id = 3, parameters = 4),
-- sets `x-modelhub-model`, re-selects the route, and on an endpoint route (whose metadata
-- the router writes: salt, sticky key, variant ranges, shadows) computes the key's bucket
-- `h32(salt, key) % total` into `x-modelhub-bucket`; Envoy's weighted clusters keyed by
-- that header pick the variant by cumulative ranges. Shadows are sampled per key with an
-- independent hash and mirrored by naming the shadow's cluster in `x-modelhub-mirror-N`.
-- The hash is modelhub.router.bucketing's, implemented twice and tested to agree.
--
-- Everything else passes through untouched. Client-sent copies of the headers this filter
-- and the route set are removed before it runs (a header_mutation filter in the bootstrap,
-- INTERNAL_HEADERS in modelhub/envoy.py), so a caller cannot pick a variant or a target.

local bit = require("bit")
local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local byte, sub = string.byte, string.sub

pcall(function() math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end)

local OIP = "/inference.GRPCInferenceService/"
local NAMED = { ModelInfer = true, ModelReady = true, ModelMetadata = true, ModelConfig = true }
local WINDOW = 4096
local MAX_NAME = 512

-- 32-bit multiply modulo 2^32 (LuaJIT numbers are doubles: split into 16-bit halves).
local function mul32(a, b)
  local alo, ahi = band(a, 0xffff), band(rshift(a, 16), 0xffff)
  local blo, bhi = band(b, 0xffff), band(rshift(b, 16), 0xffff)
  local cross = band(alo * bhi + ahi * blo, 0xffff)
  return tobit(alo * blo + lshift(cross, 16))
end

-- FNV-1a over the bytes, then murmur3's 32-bit finalizer; unsigned result.
local function h32(text)
  local h = tobit(0x811c9dc5)
  for i = 1, #text do
    h = mul32(bxor(h, byte(text, i)), 16777619)
  end
  h = bxor(h, rshift(h, 16))
  h = mul32(h, tobit(0x85ebca6b))
  h = bxor(h, rshift(h, 13))
  h = mul32(h, tobit(0xc2b2ae35))
  h = bxor(h, rshift(h, 16))
  if h < 0 then h = h + 4294967296 end
  return h
end

-- A reader over the buffered body that copies only small windows out of it.
local function reader(body)
  local size = body:length()
  local r = { size = size, base = 0, data = "" }
  function r:byte_at(pos)
    if pos >= self.size then return nil end
    if pos < self.base or pos >= self.base + #self.data then
      self.base = pos
      self.data = body:getBytes(pos, math.min(WINDOW, self.size - pos))
    end
    return byte(self.data, pos - self.base + 1)
  end
  function r:bytes(pos, n)
    if pos + n > self.size then return nil end
    if pos < self.base or pos + n > self.base + #self.data then
      self.base = pos
      self.data = body:getBytes(pos, math.min(math.max(n, WINDOW), self.size - pos))
    end
    return sub(self.data, pos - self.base + 1, pos - self.base + n)
  end
  return r
end

local function varint(r, pos)
  local value, scale = 0, 1
  for _ = 1, 10 do
    local b = r:byte_at(pos)
    if b == nil then return nil, pos end
    pos = pos + 1
    value = value + band(b, 0x7f) * scale
    if b < 0x80 then return value, pos end
    scale = scale * 128
  end
  return nil, pos
end

-- One InferParameter message as text (string, integer or bool), or nil.
local function parameter_text(r, pos, stop)
  local value = nil
  while pos < stop do
    local tag
    tag, pos = varint(r, pos)
    if tag == nil then return nil end
    local field, wire = math.floor(tag / 8), tag % 8
    if wire == 0 then
      local n
      n, pos = varint(r, pos)
      if n == nil then return nil end
      if field == 1 then
        value = (n ~= 0) and "true" or "false"
      elseif (field == 2 or field == 5) and n < 9007199254740992 then
        value = string.format("%.0f", n)
      end
    elseif wire == 2 then
      local n
      n, pos = varint(r, pos)
      if n == nil then return nil end
      if field == 3 then value = r:bytes(pos, n) end
      pos = pos + n
    elseif wire == 1 then
      pos = pos + 8
    elseif wire == 5 then
      pos = pos + 4
    else
      return nil
    end
  end
  return value
end

-- A map<string, InferParameter> entry: key, value text.
local function map_entry(r, pos, stop)
  local key, value = nil, nil
  while pos < stop do
    local tag
    tag, pos = varint(r, pos)
    if tag == nil or tag % 8 ~= 2 then return nil, nil end
    local n
    n, pos = varint(r, pos)
    if n == nil then return nil, nil end
    if tag == 10 then
      key = r:bytes(pos, n)
    elseif tag == 18 then
      value = parameter_text(r, pos, pos + n)
    end
    pos = pos + n
  end
  return key, value
end

-- model_name, model_version, id and (when `param` is given) that request parameter, read
-- from the gRPC frame without decoding tensors. Returns nil when the frame is compressed.
local function scan(body, param)
  local r = reader(body)
  local flag = r:byte_at(0)
  if flag == nil then return { name = "" } end
  if flag ~= 0 then return nil end
  local out = { name = "" }
  local pos, stop = 5, r.size
  while pos < stop do
    local tag
    tag, pos = varint(r, pos)
    if tag == nil then out.malformed = true; break end
    local field, wire = math.floor(tag / 8), tag % 8
    if wire == 2 then
      local n
      n, pos = varint(r, pos)
      if n == nil or pos + n > stop then out.malformed = true; break end
      if field == 1 and n <= MAX_NAME then
        out.name = r:bytes(pos, n) or ""
      elseif field == 2 and n <= MAX_NAME then
        out.version = r:bytes(pos, n)
      elseif field == 3 and n <= MAX_NAME then
        out.id = r:bytes(pos, n)
      elseif field == 4 and param ~= nil then
        local key, value = map_entry(r, pos, pos + n)
        if key == param then out.param = value end
      end
      pos = pos + n
    elseif wire == 0 then
      local v
      v, pos = varint(r, pos)
      if v == nil then out.malformed = true; break end
    elseif wire == 1 then
      pos = pos + 8
    elseif wire == 5 then
      pos = pos + 4
    else
      out.malformed = true
      break
    end
  end
  if pos > stop then out.malformed = true end
  return out
end

local function grpc_error(h, code, message)
  h:respond({
    [":status"] = "200",
    ["content-type"] = "application/grpc",
    ["grpc-status"] = tostring(code),
    ["grpc-message"] = message,
  }, "")
end

local function route_endpoint(h, headers, meta, found)
  local total = meta:get("total")
  local salt = meta:get("salt") or ""
  local key = nil
  local key_header = meta:get("key_header")
  if key_header ~= nil then
    key = headers:get(key_header)
  elseif meta:get("key_parameter") ~= nil and found ~= nil then
    key = found.param
  end
  if key == "" then key = nil end
  local bucket
  if key ~= nil then
    bucket = h32(salt .. "\0" .. key) % total
    headers:replace("x-modelhub-key-hash", string.format("%08x", h32("event\0" .. salt .. "\0" .. key)))
  else
    bucket = math.random(0, total - 1)
  end
  -- Ranges of variants that resolve to no READY version (and have no fallback).
  local unresolved = meta:get("unresolved")
  if unresolved ~= nil then
    for _, range in ipairs(unresolved) do
      if bucket >= range[1] and bucket < range[2] then
        grpc_error(h, 14, range[3])
        return
      end
    end
  end
  headers:replace("x-modelhub-bucket", string.format("%d", bucket))
  local shadows = meta:get("shadows")
  if shadows ~= nil then
    local mirrored = nil
    for i, shadow in ipairs(shadows) do
      local name, cluster, threshold, target = shadow[1], shadow[2], shadow[3], shadow[4]
      local sampled
      if key ~= nil then
        sampled = h32("shadow\0" .. salt .. "\0" .. name .. "\0" .. key) % total < threshold
      else
        sampled = math.random(0, total - 1) < threshold
      end
      if sampled then
        headers:replace("x-modelhub-mirror-" .. tostring(i - 1), cluster)
        -- The shadows this primary expects, so the monitor can count one that never answers.
        local entry = name .. "=" .. (target or "")
        mirrored = (mirrored == nil) and entry or (mirrored .. "," .. entry)
      end
    end
    if mirrored ~= nil then headers:replace("x-modelhub-mirrored", mirrored) end
  end
  h:clearRouteCache()
end

function envoy_on_request(h)
  local headers = h:headers()
  local path = headers:get(":path")
  if path == nil or sub(path, 1, #OIP) ~= OIP then return end
  local method = sub(path, #OIP + 1)
  local name = headers:get("x-modelhub-model")
  local found = nil
  if name == nil then
    if not NAMED[method] then return end
    local encoding = headers:get("grpc-encoding")
    if encoding ~= nil and encoding ~= "identity" then
      grpc_error(h, 3, "compressed requests (grpc-encoding: " .. encoding .. ") hide the " ..
        "model name from the front door: name the model or endpoint in the " ..
        "x-modelhub-model header")
      return
    end
    headers:remove("x-modelhub-version")
    found = scan(h:body(), nil)
    headers = h:headers()  -- wrappers taken before a yield are invalid after it
    if found == nil then
      grpc_error(h, 3, "compressed message: name the model or endpoint in the " ..
        "x-modelhub-model header")
      return
    end
    if found.malformed then
      grpc_error(h, 3, "the request is not a valid " .. method .. "Request message " ..
        "(truncated or corrupt protobuf)")
      return
    end
    name = found.name
    if found.version ~= nil and found.version ~= "" then
      headers:replace("x-modelhub-version", found.version)
    end
  end
  if name == "" then return end
  local kind = "endpoint"
  if sub(name, 1, 7) == "models/" then
    name, kind = sub(name, 8), "model"
  elseif sub(name, 1, 10) == "endpoints/" then
    name = sub(name, 11)
  elseif headers:get("x-modelhub-version") ~= nil then
    kind = "model"
  end
  headers:replace("x-modelhub-model", name)
  headers:replace("x-modelhub-route", kind)
  h:clearRouteCache()
  if kind ~= "endpoint" then return end
  local meta = h:metadata()
  if meta:get("endpoint") == nil then return end
  local key_parameter = meta:get("key_parameter")
  if key_parameter ~= nil then
    -- The key is a request parameter: read it from the (buffered) message.
    local encoding = headers:get("grpc-encoding")
    if encoding == nil or encoding == "identity" then
      found = scan(h:body(), key_parameter)
      headers = h:headers()
      meta = h:metadata()
    end
  end
  route_endpoint(h, headers, meta, found)
end
