//! Offline validation of the deployment files: every Kubernetes document
//! parses; both overlays render (`kubectl kustomize`) into objects that have
//! what they must (security settings, probes, resources, no replicas where
//! the HPA scales, a preStop delay that fits the grace period, an image
//! pinned by digest in production, an egress rule and a Service for every
//! configured upstream); the kustomizations name files that exist, the
//! config in the ConfigMap is the repository's config, and the Grafana
//! dashboard and the alerts query metrics that exist.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => v.get(i).unwrap_or(&Value::Null),
            Err(_) => v.get(key).unwrap_or(&Value::Null),
        })
}

fn all_documents() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&root().join("k8s"), &mut files);
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the manifests under k8s/: {files:?}"
    );
    files
        .into_iter()
        .flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

#[test]
fn every_document_has_api_version_kind_and_name() {
    for (file, doc) in all_documents() {
        assert!(
            get(&doc, "apiVersion").as_str().is_some(),
            "{}: no apiVersion",
            file.display()
        );
        let kind = get(&doc, "kind")
            .as_str()
            .unwrap_or_else(|| panic!("{}: no kind", file.display()));
        if kind != "Kustomization" && !file.ends_with("deployment-resources.yaml") {
            assert!(
                get(&doc, "metadata.name").as_str().is_some(),
                "{}: no metadata.name",
                file.display()
            );
        }
    }
}

/// `kubectl kustomize <dir>`: the objects an operator would apply.
fn rendered(overlay: &str) -> Vec<Value> {
    let output = std::process::Command::new("kubectl")
        .args(["kustomize", overlay])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubectl is needed to render the manifests ({e}); scripts/test installs \
                 it (sudo apt-get install -y kubernetes-client), or install a recent one \
                 from the Kubernetes apt repository"
            )
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| get(o, "kind").as_str() == Some(kind))
        .collect()
}

fn base_settings() -> toml::Table {
    std::fs::read_to_string(root().join("config/base.toml"))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn both_overlays_render_hardened_probed_bounded_and_spread() {
    for overlay in ["k8s/base", "k8s/overlays/production"] {
        let objects = rendered(overlay);
        let deployments = of_kind(&objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{overlay}");
        let deployment = deployments[0];
        let scaled = of_kind(&objects, "HorizontalPodAutoscaler")
            .iter()
            .any(|h| get(h, "spec.scaleTargetRef.name") == get(deployment, "metadata.name"));
        assert!(scaled, "{overlay}: no HPA scales the Deployment");
        assert!(
            get(deployment, "spec.replicas").is_null(),
            "{overlay}: replicas is set while an HPA scales the Deployment (every apply would scale it back)"
        );
        let pod = get(deployment, "spec.template.spec");
        assert_eq!(
            get(pod, "securityContext.runAsNonRoot").as_bool(),
            Some(true)
        );
        assert!(get(pod, "topologySpreadConstraints")
            .as_sequence()
            .is_some_and(|s| !s.is_empty()));
        let grace = get(pod, "terminationGracePeriodSeconds").as_u64().unwrap();
        let shutdown = base_settings()["server"]["shutdown_grace_secs"]
            .as_integer()
            .unwrap() as u64;
        for c in get(pod, "containers").as_sequence().unwrap() {
            let name = get(c, "name").as_str().unwrap();
            assert_eq!(
                get(c, "securityContext.readOnlyRootFilesystem").as_bool(),
                Some(true),
                "{name}"
            );
            assert_eq!(
                get(c, "securityContext.allowPrivilegeEscalation").as_bool(),
                Some(false),
                "{name}"
            );
            assert_eq!(
                get(c, "securityContext.capabilities.drop.0").as_str(),
                Some("ALL"),
                "{name}"
            );
            for key in ["requests.cpu", "requests.memory", "limits.memory"] {
                assert!(
                    !get(c, &format!("resources.{key}")).is_null(),
                    "{overlay} {name}: resources.{key}"
                );
            }
            assert!(
                get(c, "resources.limits.cpu").is_null(),
                "{overlay} {name}: a CPU limit throttles a latency-bound service (docs/OPERATIONS.md)"
            );
            let pre_stop = get(c, "lifecycle.preStop.sleep.seconds").as_u64().unwrap_or_else(|| {
                panic!("{overlay} {name}: no preStop sleep (requests still arrive while the endpoint is removed)")
            });
            assert!(
                grace > pre_stop + shutdown,
                "{overlay}: terminationGracePeriodSeconds {grace} must exceed the preStop sleep {pre_stop} + shutdown_grace_secs {shutdown}"
            );
            assert_eq!(
                get(c, "readinessProbe.httpGet.path").as_str(),
                Some("/readyz")
            );
            assert_eq!(
                get(c, "livenessProbe.httpGet.path").as_str(),
                Some("/healthz")
            );
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                assert_eq!(
                    get(c, &format!("{probe}.httpGet.port")).as_str(),
                    Some("admin"),
                    "{probe} on the admin port"
                );
            }
            let ports: HashSet<u64> = get(c, "ports")
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|p| get(p, "containerPort").as_u64())
                .collect();
            assert_eq!(ports, HashSet::from([8080, 9100]));
            let image = get(c, "image").as_str().unwrap();
            if overlay.ends_with("production") {
                assert!(
                    image.contains("@sha256:"),
                    "production pins the image by digest: {image}"
                );
            }
        }
        let monitor = of_kind(&objects, "ServiceMonitor");
        let endpoint = get(monitor[0], "spec.endpoints.0");
        assert!(
            get(endpoint, "bearerTokenSecret").is_null(),
            "bearerTokenSecret is deprecated"
        );
        assert_eq!(get(endpoint, "authorization.type").as_str(), Some("Bearer"));
    }
}

#[test]
fn every_configured_upstream_has_a_service_and_an_egress_rule() {
    let objects = rendered("k8s/overlays/production");
    let production: toml::Table =
        std::fs::read_to_string(root().join("k8s/base/config/production.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let base = base_settings();
    let url_of = |section: &str| {
        production
            .get(section)
            .and_then(|s| s.get("base_url"))
            .or_else(|| base.get(section).and_then(|s| s.get("base_url")))
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let policy = of_kind(&objects, "NetworkPolicy")[0];
    let egress = serde_norway::to_string(get(policy, "spec.egress")).unwrap();
    let mut checked = 0;
    for section in ["provider", "national", "itinerary"] {
        let url = url_of(section);
        if url.is_empty() {
            continue;
        }
        let host = reqwest::Url::parse(&url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        let service = of_kind(&objects, "Service")
            .into_iter()
            .find(|s| get(s, "metadata.name").as_str() == Some(host.as_str()))
            .unwrap_or_else(|| panic!("{section}: no Service {host} for {url}"));
        assert_eq!(
            get(service, "spec.type").as_str(),
            Some("ExternalName"),
            "{host}"
        );
        let target = get(service, "spec.externalName").as_str().unwrap();
        let namespace = target.split('.').nth(1).unwrap();
        assert!(
            egress.contains(&format!("kubernetes.io/metadata.name: {namespace}")),
            "{section} ({url} -> {target}): no egress to namespace {namespace}"
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "production configures the provider and the national platform"
    );
    let ingress = serde_norway::to_string(get(policy, "spec.ingress")).unwrap();
    for who in [
        "dispatch",
        "health-code-provider",
        "prometheus",
        "ingress-nginx",
    ] {
        assert!(ingress.contains(who), "ingress does not admit {who}");
    }
    assert_eq!(
        get(policy, "spec.policyTypes").as_sequence().unwrap().len(),
        2
    );
}

/// The metric families tripgate exports (with a decision recorded, so the
/// labelled families have series).
fn exported_metric_names() -> HashSet<String> {
    let exported = tripgate::metrics::Metrics::new();
    exported.record_decision(
        "trip",
        tripgate::domain::Outcome::Allow,
        &[tripgate::domain::ReasonCode::AllGreen],
        0.001,
    );
    exported.record_http("/v1/checks/trip", "POST", 200, 0.001);
    exported
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every `tripgate_*` name in a PromQL expression is an exported family.
fn assert_names_exported(expr: &str, names: &HashSet<String>) {
    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(base) = word.strip_prefix("tripgate_") {
            let base = format!("tripgate_{base}");
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| base.strip_suffix(s))
                .unwrap_or(&base);
            assert!(names.contains(family), "{expr}: {family} is not exported");
        }
    }
}

#[test]
fn the_shipped_alerts_query_metrics_tripgate_exports() {
    let objects = rendered("k8s/base");
    let rules = of_kind(&objects, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let names = exported_metric_names();
    let mut alerts = Vec::new();
    for group in get(rules[0], "spec.groups").as_sequence().unwrap() {
        for rule in get(group, "rules").as_sequence().unwrap() {
            assert_names_exported(get(rule, "expr").as_str().unwrap(), &names);
            alerts.push(get(rule, "alert").as_str().unwrap().to_owned());
        }
    }
    for needed in [
        "AuditCommitFailures",
        "RefusedRecordsStored",
        "AuditBacklog",
        "UpstreamCircuitOpen",
        "ErrorRate",
        "SlowDecisions",
    ] {
        assert!(
            alerts.iter().any(|a| a.contains(needed)),
            "no {needed} alert in {alerts:?}"
        );
    }
}

#[test]
fn the_required_kinds_are_all_there() {
    let kinds: HashSet<String> = all_documents()
        .iter()
        .filter_map(|(_, d)| get(d, "kind").as_str().map(str::to_owned))
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "Secret",
        "Kustomization",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
}

#[test]
fn the_example_secret_holds_placeholders_only() {
    for (file, doc) in all_documents() {
        if get(&doc, "kind").as_str() != Some("Secret") {
            continue;
        }
        for (key, value) in get(&doc, "stringData").as_mapping().unwrap() {
            let value = value.as_str().unwrap();
            assert!(
                value.starts_with("REPLACE-WITH-"),
                "{}: {key:?} is not a placeholder",
                file.display()
            );
        }
    }
}

#[test]
fn kustomizations_name_files_that_exist_and_ship_the_repository_config() {
    for (file, doc) in all_documents() {
        if get(&doc, "kind").as_str() != Some("Kustomization") {
            continue;
        }
        let dir = file.parent().unwrap();
        for entry in get(&doc, "resources").as_sequence().unwrap() {
            let target = dir.join(entry.as_str().unwrap());
            assert!(
                target.exists(),
                "{}: {} does not exist",
                file.display(),
                target.display()
            );
        }
        for generator in get(&doc, "configMapGenerator")
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for shipped in get(generator, "files").as_sequence().unwrap() {
                let shipped = dir.join(shipped.as_str().unwrap());
                let name = shipped.file_name().unwrap();
                assert_eq!(
                    std::fs::read_to_string(&shipped).unwrap(),
                    std::fs::read_to_string(root().join("config").join(name)).unwrap(),
                    "{} differs from config/{}: copy it again",
                    shipped.display(),
                    name.to_string_lossy()
                );
            }
        }
        for patch in get(&doc, "patches").as_sequence().into_iter().flatten() {
            if let Some(path) = get(patch, "path").as_str() {
                assert!(
                    dir.join(path).exists(),
                    "{}: patch {path} missing",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_non_root() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2
    );
    assert!(dockerfile.contains("USER 65532"));
    assert!(
        dockerfile.contains(r#"HEALTHCHECK"#) && dockerfile.contains(r#""healthcheck"]"#),
        "the image checks its own readiness with `tripgate healthcheck`"
    );
    // Everything the manifest needs to build is copied in.
    for needed in ["Cargo.lock", "build.rs", "COPY src", "COPY benches"] {
        assert!(
            dockerfile.contains(needed),
            "the build stage lacks {needed}"
        );
    }
    // Dependencies are not rebuilt on every source change; the image says
    // what it is.
    assert!(dockerfile.contains("--mount=type=cache,target=/src/target"));
    assert!(dockerfile.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    for label in ["title", "licenses", "version", "revision"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "no OCI label {label}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        dockerfile.contains(&format!("org.opencontainers.image.version=\"{version}\"")),
        "the image's version label is not the package's {version}"
    );
}

#[test]
fn the_dashboard_queries_metrics_tripgate_exports() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let names = exported_metric_names();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            assert_names_exported(target["expr"].as_str().unwrap(), &names);
        }
    }
}

/// The README's first command, `cargo run --release -- demo`, needs cargo
/// to know which of the two binaries (service, benchmark harness) to run.
#[test]
fn cargo_run_runs_the_service() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        metadata["packages"][0]["default_run"], "tripgate",
        "without default-run, `cargo run --release -- demo` stops with \
         'could not determine which binary to run'"
    );
}

#[test]
fn every_secret_file_production_reads_is_a_key_of_the_example_secret() {
    let production =
        std::fs::read_to_string(root().join("k8s/base/config/production.toml")).unwrap();
    let mut keys = Vec::new();
    for (_, doc) in all_documents() {
        if get(&doc, "kind").as_str() == Some("Secret")
            && get(&doc, "metadata.name").as_str() == Some("tripgate-secrets")
        {
            for (key, _) in get(&doc, "stringData").as_mapping().unwrap() {
                keys.push(key.as_str().unwrap().to_owned());
            }
        }
    }
    let files: Vec<&str> = production
        .lines()
        .filter_map(|line| line.split("\"/etc/tripgate/secrets/").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        files.len() >= 8,
        "production reads its secrets from files: {files:?}"
    );
    for file in files {
        assert!(
            keys.iter().any(|k| k == file),
            "production.toml reads /etc/tripgate/secrets/{file}, which the example Secret does not list: {keys:?}"
        );
    }
}

#[test]
fn the_shipped_configuration_files_are_the_ones_kustomize_mounts() {
    for file in ["base.toml", "policy.toml", "messages.toml"] {
        let local = std::fs::read_to_string(root().join("config").join(file)).unwrap();
        let mounted = std::fs::read_to_string(root().join("k8s/base/config").join(file)).unwrap();
        assert!(
            local == mounted,
            "k8s/base/config/{file} differs from config/{file}; copy it over"
        );
    }
}
