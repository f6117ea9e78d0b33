{{/*
Rules for what the operator owns. Objects are written with server-side apply (patch), never
update; secrets are read for origin credentials and region kubeconfigs and mirrored next to
edge pods. The Distribution finalizer (remote cleanup) needs update on distributions and,
with OwnerReferencesPermissionEnforcement, on distributions/finalizers. Edge pods are only
read: listed, and asked through the API server's pod proxy (get on pods/proxy, the edge admin
port's /config) which config file they have loaded, so a config rollout by reload can be
followed without restarting pods or giving edges API credentials. HorizontalPodAutoscalers
(regions with `autoscaling`) and ServiceAccounts (`pod.serviceAccount` without a name) are
only read and written by name, never listed or watched: drift on them is repaired at resync.
*/}}
{{- define "kubefront.rbac.distributionRules" }}
- apiGroups: ["kubefront.io"]
  resources: ["distributions"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["kubefront.io"]
  resources: ["distributions/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["kubefront.io"]
  resources: ["distributions/finalizers"]
  verbs: ["update"]
{{- end }}
{{- define "kubefront.rbac.ownedRules" }}
- apiGroups: [""]
  resources: ["configmaps", "services", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
