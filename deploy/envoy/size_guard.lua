-- The front door's byte cap on the messages the routing filter holds whole (the
-- `modelhub.size_guard` Lua filter on the ingress listener; docs/security.md).
--
-- The routing filter (deploy/envoy/modelhub.lua) buffers a ModelInfer / ModelReady /
-- ModelMetadata / ModelConfig message until it has it whole to read the model name. This
-- filter runs before it and refuses what is larger than LIMIT (EnvoyParams.max_request_bytes,
-- defined on the line the renderer puts before this source) without holding it:
--
-- * a request whose Content-Length says so (REST, any path) at once: 413 with
--   {"error": "…"}, or RESOURCE_EXHAUSTED for gRPC;
-- * a gRPC message that the routing filter would buffer: its 5-byte frame prefix declares
--   its length. An oversized one is marked in the dynamic metadata (namespace
--   `modelhub.size_guard`) and every chunk of it is dropped as it arrives; the routing
--   filter answers RESOURCE_EXHAUSTED once the client has finished sending. Envoy holds no
--   more than one chunk of it at a time.
--
-- Whatever else buffers a body (the JSON transcoder, a model named in the header with a
-- sticky key in the parameters) is bounded by the listener's buffer limits (the same
-- LIMIT): Envoy answers 413, which the local reply mappers turn into RESOURCE_EXHAUSTED or
-- {"error": "…"}.

local OIP = "/inference.GRPCInferenceService/"
local BUFFERED = { ModelInfer = true, ModelReady = true, ModelMetadata = true, ModelConfig = true }
local byte, sub = string.byte, string.sub

local function too_large(size)
  return "the request body is " .. string.format("%.0f", size) .. " bytes, larger than " ..
    "the front door's limit of " .. string.format("%.0f", LIMIT) .. " bytes (the inference " ..
    "request limit and its envelope): send fewer rows per request"
end

local function refuse(h, grpc, size)
  local message = too_large(size)
  if grpc then
    h:respond({
      [":status"] = "200",
      ["content-type"] = "application/grpc",
      ["grpc-status"] = "8",
      ["grpc-message"] = message,
    }, "")
  else
    h:respond({ [":status"] = "413", ["content-type"] = "application/json" },
      '{"error":"' .. message .. '"}')
  end
end

function envoy_on_request(h)
  local headers = h:headers()
  local grpc = sub(headers:get("content-type") or "", 1, 16) == "application/grpc"
  local length = tonumber(headers:get("content-length") or "")
  if length ~= nil and length > LIMIT then
    refuse(h, grpc, length)
    return
  end
  -- Only the messages the routing filter holds whole (its conditions, in the same order).
  if not grpc or headers:get("x-modelhub-model") ~= nil then return end
  local path = headers:get(":path") or ""
  if sub(path, 1, #OIP) ~= OIP or not BUFFERED[sub(path, #OIP + 1)] then return end
  local encoding = headers:get("grpc-encoding")
  if encoding ~= nil and encoding ~= "identity" then return end
  local prefix = ""
  local declared = nil
  for chunk in h:bodyChunks() do
    if declared == nil then
      local size = chunk:length()
      if size > 0 then
        prefix = prefix .. chunk:getBytes(0, math.min(size, 5 - #prefix))
      end
      if #prefix == 5 then  -- (else the prefix continues in the next chunk)
        local b1, b2, b3, b4 = byte(prefix, 2, 5)
        declared = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
        if declared <= LIMIT then return end
        h:streamInfo():dynamicMetadata():set("modelhub.size_guard", "message",
          too_large(declared))
      end
    end
    if declared ~= nil then chunk:setBytes("") end
  end
end
