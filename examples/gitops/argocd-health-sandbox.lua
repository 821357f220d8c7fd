-- Argo CD health of a sandpit.dev Sandbox, from its Ready condition and phase.
-- In argocd-cm (gitops/argocd-cm-health.yaml holds it ready to apply):
--   resource.customizations.health.sandpit.dev_Sandbox: |
--     <this file>
hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the sandbox"
if obj.status == nil then
  return hs
end
local phase = obj.status.phase
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Sandbox failed"
end
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Sandbox paused"
end
if phase == "Expired" then
  hs.status = "Healthy"
  hs.message = "Sandbox expired (kept by expiryPolicy Retain)"
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      if c.message ~= nil and c.message ~= "" then
        hs.message = c.message
      end
      if c.status == "True" then
        hs.status = "Healthy"
        if c.message == nil or c.message == "" then
          hs.message = "Sandbox ready"
        end
      elseif c.reason == "NodeLost" or c.reason == "CreateFailed" or c.reason == "InvalidTemplate"
          or c.reason == "ImagePullFailed" or c.reason == "SecretNotFound" then
        hs.status = "Degraded"
      elseif c.reason == "Paused" then
        hs.status = "Suspended"
      end
    end
  end
end
return hs
