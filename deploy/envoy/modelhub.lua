-- ModelHub's routing filter (envoy.filters.http.lua on the ingress listener).
--
-- For Open Inference Protocol gRPC calls it reads the model name where the request has it
-- (the message's first fields: model_name = 1, model_version = 2, parameters = 4),
-- sets `x-modelhub-model`, re-selects the route, and on an endpoint route (whose metadata
-- the router writes: salt, sticky key, variant ranges, shadows) computes the key's bucket
-- `h32(salt, key) % total` into `x-modelhub-bucket`; Envoy's weighted clusters keyed by
-- that header pick the variant by cumulative ranges. Shadows are sampled per key with an
-- independent hash and mirrored by naming the shadow's cluster in `x-modelhub-mirror-N`.
-- The hash is modelhub.router.bucketing's, implemented twice and tested to agree.
--
-- Everything else passes through untouched. Client-sent copies of the headers this filter
-- and the route set are removed before it runs (a header_mutation filter in the bootstrap,
-- INTERNAL_HEADERS in modelhub.router.envoy), so a caller cannot pick a variant or a target.

local bit = require("bit")
local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local byte, sub, find = string.byte, string.sub, string.find

pcall(function() math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end)

local OIP = "/inference.GRPCInferenceService/"
local REST = "/modelhub.rest.v1.InferenceRest/"
local NAMED = { ModelInfer = true, ModelReady = true, ModelMetadata = true, ModelConfig = true }
-- A stream is routed as a whole by its headers (x-modelhub-model, the sticky key header):
-- its messages are never buffered here.
local STREAM = "ModelStreamInfer"
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

-- A reader over the buffered body that copies only small windows out of it: a table
-- { body, size, base, data } and two functions (no per-request closures).
local function byte_at(r, pos)
  if pos >= r.size then return nil end
  if pos < r.base or pos >= r.base + #r.data then
    r.base = pos
    r.data = r.body:getBytes(pos, math.min(WINDOW, r.size - pos))
  end
  return byte(r.data, pos - r.base + 1)
end

local function bytes_at(r, pos, n)
  if pos + n > r.size then return nil end
  if pos < r.base or pos + n > r.base + #r.data then
    r.base = pos
    r.data = r.body:getBytes(pos, math.min(math.max(n, WINDOW), r.size - pos))
  end
  return sub(r.data, pos - r.base + 1, pos - r.base + n)
end

local function varint(r, pos)
  local value, scale = 0, 1
  for _ = 1, 10 do
    local b = byte_at(r, pos)
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
      if field == 3 then value = bytes_at(r, pos, n) end
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
      key = bytes_at(r, pos, n)
    elseif tag == 18 then
      value = parameter_text(r, pos, pos + n)
    end
    pos = pos + n
  end
  return key, value
end

-- model_name and model_version read from the gRPC frame without decoding tensors, and
-- where the request parameters (field 4) are, for a sticky key that is one of them. nil
-- when the frame is compressed.
local function scan(body)
  local r = { body = body, size = body:length(), base = 0, data = "" }
  local flag = byte_at(r, 0)
  if flag == nil then return { name = "" } end
  if flag ~= 0 then return nil end
  local out = { name = "", reader = r }
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
        out.name = bytes_at(r, pos, n) or ""
      elseif field == 2 and n <= MAX_NAME then
        out.version = bytes_at(r, pos, n)
      elseif field == 4 then
        local spans = out.params
        if spans == nil then spans = {}; out.params = spans end
        spans[#spans + 1] = pos
        spans[#spans + 1] = pos + n
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

-- The request parameter `name` as text (the last entry wins, like a map), or nil.
local function parameter(found, name)
  local spans = found.params
  if spans == nil then return nil end
  local value = nil
  for i = 1, #spans, 2 do
    local key, text = map_entry(found.reader, spans[i], spans[i + 1])
    if key == name then value = text end
  end
  return value
end

local function grpc_error(h, code, message)
  h:respond({
    [":status"] = "200",
    ["content-type"] = "application/grpc",
    ["grpc-status"] = tostring(code),
    ["grpc-message"] = message,
  }, "")
end

-- The refusal of a message the size guard (deploy/envoy/size_guard.lua) found larger than
-- the front door's limit: it dropped the message's bytes as they arrived.
local function oversized(h)
  local mark = h:streamInfo():dynamicMetadata():get("modelhub.size_guard")
  if mark == nil then return nil end
  return mark["message"]
end

local function route_endpoint(h, headers, meta, found, stream)
  local total = meta:get("total")
  local salt = meta:get("salt") or ""
  local key = nil
  local key_header = meta:get("key_header")
  if key_header ~= nil then
    key = headers:get(key_header)
  elseif meta:get("key_parameter") ~= nil and found ~= nil then
    key = parameter(found, meta:get("key_parameter"))
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
  -- Streams are not mirrored (a shadow copy of a long-lived stream would hold a replica).
  if shadows ~= nil and not stream then
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
  if path == nil then return end
  local method
  if sub(path, 1, #OIP) == OIP then
    method = sub(path, #OIP + 1)
  elseif sub(path, 1, #REST) == REST then
    -- REST after the transcoder: a RestRequest (model_name = 1, model_version = 2).
    method = sub(path, #REST + 1)
  else
    return
  end
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
    local body = h:body()
    local refused = oversized(h)
    if refused ~= nil then
      grpc_error(h, 8, refused)
      return
    end
    found = scan(body)
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
    -- Header values cannot hold control characters (Envoy would fail the request as
    -- UNAVAILABLE): no valid model, endpoint or version name has them either.
    local control = "[%z\1-\31\127]"
    if find(name, control) or (found.version and find(found.version, control)) then
      grpc_error(h, 3, "the model name or version holds control characters: no model, " ..
        "endpoint or version is named so")
      return
    end
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
  if found == nil and meta:get("key_parameter") ~= nil and method ~= STREAM then
    -- The model was named in the header and the key is a request parameter: read the
    -- message (unless compressed) for it.
    local encoding = headers:get("grpc-encoding")
    if encoding == nil or encoding == "identity" then
      found = scan(h:body())
      headers = h:headers()
      meta = h:metadata()
    end
  end
  route_endpoint(h, headers, meta, found, method == STREAM)
end
