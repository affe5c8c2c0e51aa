#!/usr/bin/env python3
"""Lints and renders charts/vane with Helm's own Go SDK (the `helm-python-sdk` wheel), with no
helm binary and no cluster.

    render.py lint [-f VALUES.yaml]... [--set-json JSON]
        `helm lint --strict`: prints every finding; exits 1 on any warning or error.
    render.py template [-f VALUES.yaml]... [--set-json JSON] [--name vane] [--namespace vane]
                       [--include-crds]
        `helm template`: validates the values against values.schema.json, renders, and prints
        the manifests as one YAML stream (CRDs first with --include-crds, then in the order
        `helm install` applies them). Exits 1 with the reason on stderr when the values are
        rejected or a template fails.
    render.py manifest
        deploy/vane.yaml, for `kubectl apply` users: a header, the Namespace "vane", then what
        `template --include-crds` prints for the default values (release vane in namespace vane).
    render.py notes [same options as template]
        Prints the rendered NOTES.txt.

The assertions live in the Rust test tests/chart.rs; this script only runs Helm.
"""

import argparse
import json
import pathlib
import sys

CHART = pathlib.Path(__file__).resolve().parent.parent / "vane"

INSTALL = "run .ci/run, or `python3 -m pip install -r charts/tests/requirements.txt`"

try:
    import helm_python as helm
except ImportError:
    sys.exit(f"render.py: the Python module helm_python is missing: {INSTALL}")


def pinned_version():
    requirements = pathlib.Path(__file__).resolve().parent / "requirements.txt"
    for line in requirements.read_text().splitlines():
        if line.startswith("helm-python-sdk=="):
            return line.split("==", 1)[1].strip()
    raise SystemExit("render.py: requirements.txt does not pin helm-python-sdk")


# Another Helm renders differently, and deploy/vane.yaml is compared byte for byte.
if helm.__version__ != pinned_version():
    sys.exit(
        f"render.py: helm-python-sdk {helm.__version__} is installed, the tests pin "
        f"{pinned_version()}: {INSTALL}"
    )

# The order in which `helm install` creates kinds (Helm's InstallOrder, abridged to the kinds
# this chart renders); kinds not listed go last.
INSTALL_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]


def values_from(args):
    """The user-supplied values: each -f file in turn, then --set-json, merged deeply."""
    values = {}
    for path in args.values:
        merge(values, helm.values_from_yaml(pathlib.Path(path).read_text()) or {})
    if args.set_json:
        merge(values, json.loads(args.set_json))
    return values


def merge(into, overrides):
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def documents(text):
    """Splits a rendered template into its YAML documents, dropping empty ones."""
    docs, current = [], []
    for line in text.splitlines():
        if line.strip() == "---":
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return [d.strip("\n") for d in docs if has_content(d)]


def has_content(doc):
    return any(line.strip() and not line.lstrip().startswith("#") for line in doc.splitlines())


def kind_of(doc):
    for line in doc.splitlines():
        if line.startswith("kind:"):
            return line.split(":", 1)[1].strip()
    return ""


def lint(args):
    report = helm.lint(str(CHART), values_from(args), strict=True, namespace=args.namespace)
    failed = bool(report.get("errors"))
    for message in report.get("messages") or []:
        severity = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(message["severity"])
        print(f"[{severity}] {message['path']}: {message['error']}")
        failed |= message["severity"] != 1
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
    print(f"{report.get('total_charts_linted', 0)} chart(s) linted, {'failed' if failed else 'ok'}")
    return 1 if failed else 0


def render(args, chart, values):
    # `helm install` and `helm template` validate the values first; the SDK's render does not.
    chart.validate_schema(values)
    return chart.render(values, name=args.name, namespace=args.namespace, is_install=True)


MANIFEST_HEADER = """\
# vane for `kubectl apply -f deploy/vane.yaml`: the Namespace, the BackendPolicy CRD, and the
# chart charts/vane rendered with its default values (release "vane" in namespace "vane").
# Generated by `make manifests`; do not edit (a test fails when it drifts from the chart). To
# change a value, install the chart with Helm instead.
---
apiVersion: v1
kind: Namespace
metadata:
  name: vane
  labels:
    # vane's pods meet the "restricted" Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
"""


def manifest(args):
    if args.values or args.set_json or args.name != "vane" or args.namespace != "vane":
        raise SystemExit("render.py manifest: takes no values, name or namespace")
    sys.stdout.write(MANIFEST_HEADER)
    args.include_crds = True
    return template(args)


def template(args):
    values = values_from(args)
    with helm.Chart.load(str(CHART)) as chart:
        out = []
        if args.include_crds:
            for crd in sorted(chart.crds, key=lambda c: c["filename"]):
                out.append(f"# Source: {crd['filename']}\n{crd['data'].strip(chr(10))}")
        manifests = render(args, chart, values)
        rendered = []
        for path in sorted(manifests):
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in documents(manifests[path]):
                rendered.append((path, doc))
        order = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
        # A stable sort: within one kind, templates stay in file order.
        rendered.sort(key=lambda item: order.get(kind_of(item[1]), len(order)))
        out.extend(f"# Source: {path}\n{doc}" for path, doc in rendered)
    sys.stdout.write("".join(f"---\n{doc}\n" for doc in out))
    return 0


def notes(args):
    values = values_from(args)
    with helm.Chart.load(str(CHART)) as chart:
        manifests = render(args, chart, values)
    sys.stdout.write(manifests[f"{chart_name()}/templates/NOTES.txt"])
    return 0


def chart_name():
    for line in (CHART / "Chart.yaml").read_text().splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit("render.py: Chart.yaml has no name")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["lint", "template", "manifest", "notes"])
    parser.add_argument("-f", "--values", action="append", default=[], metavar="VALUES.yaml")
    parser.add_argument("--set-json", metavar="JSON", help="more values, as a JSON object")
    parser.add_argument("--name", default="vane", help="release name (default: vane)")
    parser.add_argument("--namespace", default="vane", help="release namespace (default: vane)")
    parser.add_argument("--include-crds", action="store_true")
    args = parser.parse_args()
    try:
        return {"lint": lint, "template": template, "manifest": manifest, "notes": notes}[args.command](args)
    except helm.HelmError as error:
        print(f"render.py {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
