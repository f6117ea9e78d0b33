"""Validates manifests that kubernetes-validate cannot check on its own.

  validate_custom.py CRD.yaml FILE...      custom resources in FILEs against the CRD's openAPIV3Schema
  validate_custom.py --builtin-only FILE...  print the built-in kinds of FILEs (for kubernetes-validate)

The CRD check is structural (types, required, enums, patterns, unknown fields where the schema
closes them); CEL rules (x-kubernetes-validations) are checked by the API server, not here.
"""
import sys

import jsonschema
import yaml


def documents(paths):
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    yield path, doc


def is_builtin(api_version):
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def to_jsonschema(node):
    """OpenAPI v3 (Kubernetes structural subset) -> JSON Schema draft 7."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        else:
            out[key] = to_jsonschema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    # Structural schemas prune unknown fields; a typo silently disappears on a real cluster.
    # Be strict here so examples cannot carry fields the operator never sees.
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def load_crds(path):
    schemas = {}
    for _, doc in documents([path]):
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            api_version = f"{spec['group']}/{version['name']}"
            schema = to_jsonschema(version["schema"]["openAPIV3Schema"])
            # apiVersion/kind/metadata are implicit in every CRD schema; ObjectMeta is validated
            # by the API server's own rules.
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "const": api_version}
            props["kind"] = {"type": "string", "const": spec["names"]["kind"]}
            props["metadata"] = {"type": "object"}
            schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def main(argv):
    if argv and argv[0] == "--builtin-only":
        docs = [doc for _, doc in documents(argv[1:]) if is_builtin(doc.get("apiVersion", ""))]
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
        return 0
    crd_path, paths = argv[0], argv[1:]
    custom = [(p, d) for p, d in documents(paths) if not is_builtin(d.get("apiVersion", ""))]
    if not custom:
        return 0
    try:
        schemas = load_crds(crd_path)
    except FileNotFoundError:
        print(f"{crd_path} is missing: cannot validate {len(custom)} custom resource(s)", file=sys.stderr)
        return 1
    failed = 0
    for path, doc in custom:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{path}: {key[1]} {doc.get('metadata', {}).get('name')}"
        schema = schemas.get(key)
        if schema is None:
            print(f"{name}: no CRD for {key[0]} {key[1]} in {crd_path}", file=sys.stderr)
            failed += 1
            continue
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        for err in errors:
            where = "/".join(str(p) for p in err.path) or "(root)"
            print(f"{name}: {where}: {err.message}", file=sys.stderr)
        failed += bool(errors)
        if not errors:
            print(f"{name}: valid against {crd_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
