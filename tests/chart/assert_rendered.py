"""Asserts properties of the rendered chart that schemas cannot express.

  helm template ... | assert_rendered.py VALUES   (VALUES: "default" or the values file used)

Fails (exit 1) with one line per broken property.
"""
import sys

import yaml

values_name = sys.argv[1]
values = {}
if values_name != "default":
    with open(values_name) as f:
        values = yaml.safe_load(f) or {}
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
problems = []


def expect(cond, msg):
    if not cond:
        problems.append(msg)


by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
    labels = d["metadata"].get("labels", {})
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "helm.sh/chart"):
        expect(key in labels, f"{d['kind']} {d['metadata']['name']}: label {key} missing")

deployments = by_kind.get("Deployment", [])
expect(len(deployments) == 1, f"want exactly 1 Deployment, got {len(deployments)}")
replicas = values.get("replicas", 1)
for dep in deployments:
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    expect(spec["replicas"] == replicas, f"replicas {spec['replicas']} != {replicas}")
    expect(set(spec["selector"]["matchLabels"].items()) <= set(spec["template"]["metadata"]["labels"].items()),
           "selector does not match the pod labels")
    psc = pod.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True, "pod runAsNonRoot must be true")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccomp must be RuntimeDefault")
    (c,) = pod["containers"]
    sc = c.get("securityContext", {})
    expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities must drop ALL")
    expect(sc.get("runAsUser", psc.get("runAsUser")) == 65532, "must run as uid 65532")
    expect(c["args"][:1] == ["run"], f"operator args must start with run, got {c['args']}")
    env = {e["name"]: e for e in c["env"]}
    expect(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           == "metadata.namespace", "POD_NAMESPACE must come from metadata.namespace")
    leader = values.get("leaderElection", "auto")
    want_leader = (replicas > 1) if leader == "auto" else bool(leader)
    expect(env.get("KUBEFRONT_LEADER_ELECTION", {}).get("value") == str(want_leader).lower(),
           f"KUBEFRONT_LEADER_ELECTION should be {want_leader}")
    expect(("KUBEFRONT_WATCH_NAMESPACE" in env) == bool(values.get("watchNamespace")),
           "KUBEFRONT_WATCH_NAMESPACE must be set exactly when watchNamespace is")
    edge = env.get("KUBEFRONT_EDGE_IMAGE", {}).get("value", "")
    expect(edge.startswith(values.get("edgeImage", {}).get("repository", "kubefront/edge")),
           f"KUBEFRONT_EDGE_IMAGE {edge!r} does not use edgeImage.repository")
    port = values.get("metrics", {}).get("port", 8080)
    expect(env.get("KUBEFRONT_METRICS_ADDR", {}).get("value") == f"0.0.0.0:{port}", "metrics address != port")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        expect(c.get(probe, {}).get("httpGet", {}).get("path") == path, f"{probe} must GET {path}")
    expect(c["ports"][0]["containerPort"] == port, "container port != metrics.port")
    if want_leader:
        expect(spec["strategy"]["type"] == "RollingUpdate", "with leader election use RollingUpdate")
    else:
        expect(spec["strategy"]["type"] == "Recreate", "without leader election two pods must never overlap")

roles = by_kind.get("Role", []) + by_kind.get("ClusterRole", [])
if values.get("rbac", {}).get("create", True):
    watch = values.get("watchNamespace")
    main_kind = "Role" if watch else "ClusterRole"
    other_kind = "ClusterRole" if watch else "Role"
    expect(any(r["kind"] == main_kind for r in roles), f"want a {main_kind} for watchNamespace={watch!r}")
    expect(not any(r["kind"] == other_kind and not r["metadata"]["name"].endswith(("-leader-election", "-edge"))
                   for r in roles), f"unexpected {other_kind}")
    rules = [(g, res, v) for r in roles for rule in r["rules"] for g in rule["apiGroups"]
             for res in rule["resources"] for v in rule["verbs"]]
    for res in ("distributions", "distributions/status", "distributions/finalizers"):
        expect(any(g == "kubefront.io" and x == res for g, x, _ in rules), f"no rule for {res}")
    for g, res in (("", "secrets"), ("", "configmaps"), ("", "services"), ("apps", "deployments"),
                   ("policy", "poddisruptionbudgets"), ("events.k8s.io", "events")):
        expect((g, res, "patch") in rules, f"no patch on {g or 'core'}/{res}")
    expect(not any(v == "*" or res == "*" or g == "*" for g, res, v in rules), "wildcards in RBAC rules")
    # Config rollouts by reload: pods are read, and asked through the pod proxy, never written.
    expect(("", "pods", "list") in rules and ("", "pods/proxy", "get") in rules,
           "no list on pods / get on pods/proxy (config rollout status)")
    expect(not any(g == "" and res in ("pods", "pods/proxy") and v not in ("get", "list")
                   for g, res, v in rules), "pods or pods/proxy granted more than get/list")
    expect(not any(res in ("pods/exec", "nodes", "clusterroles", "clusterrolebindings") for _, res, _ in rules),
           "RBAC grants more than the operator needs")
    has_lease = any(g == "coordination.k8s.io" and res == "leases" for g, res, _ in rules)
    expect(has_lease == want_leader if deployments else True, "lease rules must exist exactly with leader election")

services = by_kind.get("Service", [])
expect(bool(services) == values.get("metrics", {}).get("service", {}).get("enabled", True),
       "metrics Service presence != metrics.service.enabled")
expect(bool(by_kind.get("ServiceMonitor")) == values.get("serviceMonitor", {}).get("enabled", False),
       "ServiceMonitor presence != serviceMonitor.enabled")
expect(bool(by_kind.get("NetworkPolicy")) == values.get("networkPolicy", {}).get("enabled", False),
       "NetworkPolicy presence != networkPolicy.enabled")
for sm in by_kind.get("ServiceMonitor", []):
    expect(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    expect(sm["spec"]["endpoints"][0]["port"] == "metrics", "ServiceMonitor must scrape the metrics port")

for p in problems:
    print(f"  {values_name}: {p}", file=sys.stderr)
print(f"  {values_name}: {len(docs)} objects, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
