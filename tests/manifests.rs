//! Offline validation of the deployment files: every Kubernetes document
//! parses and has what it must (security settings, probes, resources), the
//! kustomizations name files that exist, the config in the ConfigMap is the
//! repository's config, and the Grafana dashboard queries metrics that exist.

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

#[test]
fn the_deployment_is_hardened_probed_bounded_and_spread() {
    let docs = all_documents();
    let (_, deployment) = docs
        .iter()
        .find(|(f, d)| {
            get(d, "kind").as_str() == Some("Deployment") && f.ends_with("base/deployment.yaml")
        })
        .expect("a Deployment in k8s/base");
    assert!(get(deployment, "spec.replicas").as_u64().unwrap() >= 3);
    let pod = get(deployment, "spec.template.spec");
    assert_eq!(
        get(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert!(get(pod, "topologySpreadConstraints")
        .as_sequence()
        .is_some_and(|s| !s.is_empty()));
    let grace = get(pod, "terminationGracePeriodSeconds").as_u64().unwrap();
    let base: toml::Table = std::fs::read_to_string(root().join("config/base.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let shutdown = base["server"]["shutdown_grace_secs"].as_integer().unwrap() as u64;
    assert!(
        grace > shutdown,
        "terminationGracePeriodSeconds {grace} must exceed shutdown_grace_secs {shutdown}"
    );
    let containers = get(pod, "containers").as_sequence().unwrap();
    for c in containers {
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
        for key in [
            "requests.cpu",
            "requests.memory",
            "limits.cpu",
            "limits.memory",
        ] {
            assert!(
                !get(c, &format!("resources.{key}")).is_null(),
                "{name}: resources.{key}"
            );
        }
        assert_eq!(
            get(c, "readinessProbe.httpGet.path").as_str(),
            Some("/readyz")
        );
        assert_eq!(
            get(c, "livenessProbe.httpGet.path").as_str(),
            Some("/healthz")
        );
        for probe in ["readinessProbe", "livenessProbe"] {
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
    }
}

#[test]
fn the_network_policy_admits_only_dispatch_provider_and_prometheus() {
    let docs = all_documents();
    let (_, policy) = docs
        .iter()
        .find(|(_, d)| get(d, "kind").as_str() == Some("NetworkPolicy"))
        .expect("a NetworkPolicy");
    let ingress = get(policy, "spec.ingress").as_sequence().unwrap();
    let text = serde_norway::to_string(ingress).unwrap();
    for who in ["dispatch", "health-code-provider", "prometheus"] {
        assert!(text.contains(who), "ingress does not admit {who}");
    }
    assert!(get(policy, "spec.policyTypes").as_sequence().unwrap().len() == 2);
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
}

#[test]
fn the_dashboard_queries_metrics_tripgate_exports() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exported = tripgate::metrics::Metrics::new();
    exported.record_decision(
        "trip",
        tripgate::domain::Outcome::Allow,
        &[tripgate::domain::ReasonCode::AllGreen],
        0.001,
    );
    let text = exported.encode();
    let names: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
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
