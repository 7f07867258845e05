-- REST error bodies in the Open Inference Protocol's shape (the `modelhub.rest_errors` Lua
-- filter, enabled per route on the /v2 REST routes only; docs/rest.md), and the binary
-- tensor extension's Inference-Header-Content-Length response header.
--
-- It sits before the gRPC-JSON transcoder, so on the way out it sees the transcoded answer:
-- an upstream error arrives as `{"code": N, "message": "…"}` (the transcoder's
-- google.rpc.Status JSON, with the HTTP status already mapped from the gRPC code) and the
-- transcoder's own refusals (unknown path, unknown query parameter) as text/plain. Both
-- become `{"error": "…"}` with the same HTTP status. Successful answers pass untouched.

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function envoy_on_response(h)
  local headers = h:headers()
  local kind = headers:get("content-type") or ""
  -- A binary tensor answer names its JSON header's length in the content type
  -- (modelhub.inference.rest_api): the protocol wants it as a header.
  local length = kind:match("^application/octet%-stream; inference%-header%-content%-length=(%d+)$")
  if length ~= nil then
    headers:replace("content-type", "application/octet-stream")
    headers:replace("inference-header-content-length", length)
    return
  end
  local status = tonumber(headers:get(":status"))
  if status == nil or status < 400 then return end
  local body = h:body()
  headers = h:headers()
  local text = ""
  if body ~= nil and body:length() > 0 then text = body:getBytes(0, body:length()) end
  local message
  if kind:sub(1, 16) == "application/json" then
    if text:sub(1, 9) == '{"error":' then return end
    -- The transcoder's google.rpc.Status: the message is already a JSON string.
    message = text:match('"message"%s*:%s*("[^"\\]*")') or
      text:match('"message"%s*:%s*(".-[^\\]")')
    if message == nil then message = json_string(text) end
  else
    message = json_string(text ~= "" and text or ("HTTP " .. tostring(status)))
  end
  local out = '{"error":' .. message .. '}'
  if body ~= nil then body:setBytes(out) end
  headers:replace("content-type", "application/json")
  headers:replace("content-length", tostring(#out))
end
