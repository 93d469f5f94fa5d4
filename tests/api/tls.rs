//! Redis and PostgreSQL over TLS, with passwords from files: a TLS-only
//! `redis-server` and a PostgreSQL with `ssl = on` that accepts only TLS
//! connections with a password, both with certificates made here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{free_port, trip, Options, TestApp};

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir`: (ca, cert, key).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A redis-server that speaks TLS only, and wants a password.
fn tls_redis(dir: &Path, cert: &Path, key: &Path, ca: &Path, password: &str) -> (Killed, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        .arg("--tls-ca-cert-file")
        .arg(ca)
        .args(["--tls-auth-clients", "no", "--requirepass", password])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server; scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the TLS redis-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Killed(child), port)
}

fn with_tls_redis(port: u16, ca: PathBuf, password_file: PathBuf) -> Options {
    Options {
        customise: Box::new(move |s| {
            s.cache.redis_url = format!("rediss://127.0.0.1:{port}");
            s.cache.redis_ca_file = Some(ca);
            s.cache.redis_password_file = Some(password_file);
            // The first command also connects, shakes hands and
            // authenticates: on a busy machine with a debug build that can
            // take longer than the default 50 ms (this test is about TLS,
            // not latency).
            s.cache.command_timeout_ms = 2_000;
            s.cache.connect_timeout_ms = 2_000;
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn redis_over_tls_with_a_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "redis");
    let (wrong_ca, _, _) = certificates(dir.path(), "other");
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, "s3cret-redis-password\n").unwrap();
    let (_redis, port) = tls_redis(dir.path(), &cert, &key, &ca, "s3cret-redis-password");

    // One instance asks the provider and writes Redis; a second one, whose
    // provider is down, finds the code in Redis: the round trip works.
    let first = TestApp::spawn_with(with_tls_redis(port, ca.clone(), password_file.clone())).await;
    first.set_code("D-1", "green", "hangzhou").await;
    first.set_code("P-1", "green", "hangzhou").await;
    assert_eq!(
        first.decide(&trip("D-1", &["P-1"])).await["decision"],
        "allow"
    );
    let second = TestApp::spawn_with(with_tls_redis(port, ca.clone(), password_file.clone())).await;
    second.set_faults(serde_json::json!({"outage": true})).await;
    // The first write-back, and the second's first TLS handshake, may take
    // a moment on a busy machine: ask until Redis answers (each try is a
    // decision of its own; one that misses Redis is unavailable, and
    // caches nothing).
    let mut body = Value::Null;
    for _ in 0..30 {
        body = second.decide(&trip("D-1", &["P-1"])).await;
        if body["parties"][0]["source"] == "redis" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["parties"][0]["source"], "redis", "{body}");
    let (_, ready) = second.get_admin_json("/readyz").await;
    assert_eq!(ready["cache"]["up"], true, "{ready}");

    // A certificate from another CA is refused: Redis counts as down.
    let untrusting = TestApp::spawn_with(with_tls_redis(port, wrong_ca, password_file)).await;
    let body = untrusting.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "reject", "{body}");
    let (_, ready) = untrusting.get_admin_json("/readyz").await;
    assert_eq!(ready["cache"]["up"], false, "{ready}");

    // The wrong password: down too.
    let wrong_password = dir.path().join("wrong-password");
    std::fs::write(&wrong_password, "guess").unwrap();
    let guessing = TestApp::spawn_with(with_tls_redis(port, ca, wrong_password)).await;
    let body = guessing.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "reject", "{body}");
}

#[test]
fn tls_files_are_checked_at_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let mut settings = tripgate::config::Settings::load_from(
        &crate::helpers::config_dir(),
        tripgate::config::Environment::Local,
    )
    .unwrap();
    settings.cache.redis_ca_file = Some(not_pem.clone());
    let error = settings.parse().err().expect("refused").to_string();
    assert!(error.contains("cache.redis_ca_file"), "{error}");
    let (ca, _, _) = certificates(dir.path(), "x");
    settings.cache.redis_ca_file = Some(ca.clone());
    settings.cache.backend = tripgate::config::CacheBackend::Redis;
    settings.cache.redis_url = "redis://127.0.0.1:6379".into();
    let error = settings.parse().err().expect("refused").to_string();
    assert!(error.contains("not rediss://"), "{error}");
    settings.cache.redis_ca_file = None;
    settings.audit.postgres_ca_file = Some(dir.path().join("missing.pem"));
    let error = settings.parse().err().expect("refused").to_string();
    assert!(error.contains("audit.postgres_ca_file"), "{error}");
    settings.audit.postgres_ca_file = None;
    settings.provider.ca_file = Some(not_pem);
    let error = settings.parse().err().expect("refused").to_string();
    assert!(error.contains("provider.ca_file"), "{error}");
}

/// A private PostgreSQL with `ssl = on` that takes only TLS connections
/// with a password (`hostssl ... scram-sha-256`, no `host` line).
struct TlsPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    // initdb refuses to run as root.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        Command::new(bin.join(tool))
    }
}

impl TlsPostgres {
    fn start(cert: &Path, key: &Path, password: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect(
                "PostgreSQL's server binaries are needed (apt-get install postgresql; \
                 scripts/test installs it)",
            );
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, password).unwrap();
        let own = |path: &Path| {
            let _ = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(path)
                .status();
        };
        own(dir.path());
        let status = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        std::fs::copy(cert, data.join("server.crt")).unwrap();
        std::fs::copy(key, data.join("server.key")).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        own(dir.path());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let port = free_port();
        let status = as_postgres(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c fsync=off",
                dir.path().display()
            ))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Self { dir, port, bin }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn postgresql_over_tls_with_a_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "postgres");
    let (wrong_ca, _, _) = certificates(dir.path(), "other");
    let postgres = TlsPostgres::start(&cert, &key, "s3cret-pg-password");
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, "s3cret-pg-password\n").unwrap();
    let port = postgres.port;
    let url =
        move |mode: &str| format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode={mode}");

    let settings = |url: String, ca: PathBuf, password: PathBuf| {
        let mut settings = tripgate::config::Settings::load_from(
            &crate::helpers::config_dir(),
            tripgate::config::Environment::Local,
        )
        .unwrap();
        settings.audit.backend = tripgate::config::AuditBackend::Postgres;
        settings.audit.postgres_url = url;
        settings.audit.postgres_ca_file = Some(ca);
        settings.audit.postgres_password_file = Some(password);
        settings
    };
    let open = |s: &tripgate::config::Settings| {
        let config = s.audit_store();
        async move { tripgate::audit::AuditStore::open(&config).await }
    };

    // Without TLS, or with a certificate of another CA, no connection.
    let plain = settings(url("disable"), ca.clone(), password_file.clone());
    assert!(
        open(&plain).await.is_err(),
        "a connection without TLS was accepted"
    );
    let untrusting = settings(url("require"), wrong_ca, password_file.clone());
    assert!(
        open(&untrusting).await.is_err(),
        "another CA's certificate was trusted"
    );
    let wrong_password = dir.path().join("wrong");
    std::fs::write(&wrong_password, "guess").unwrap();
    let guessing = settings(url("require"), ca.clone(), wrong_password);
    assert!(
        open(&guessing).await.is_err(),
        "a wrong password was accepted"
    );
    let good = settings(url("require"), ca.clone(), password_file.clone());
    assert!(
        open(&good).await.is_ok(),
        "TLS with the CA and the password"
    );

    // With TLS, the CA and the password: decisions are recorded and verify.
    let good_url = url("require");
    let (ca2, pw2) = (ca.clone(), password_file.clone());
    let mut app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            s.audit.backend = tripgate::config::AuditBackend::Postgres;
            s.audit.postgres_url = good_url;
            s.audit.postgres_ca_file = Some(ca2);
            s.audit.postgres_password_file = Some(pw2);
        }),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "red", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "reject");
    let (status, page) = app.get_json("/v1/audit/decisions").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["decisions"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
    // The writer signs a chain's first head just after it answers the
    // decision; a clean stop closes the chain, so there is a signed head to
    // verify against whatever the scheduling.
    app.stop().await;
    let (code, out) = crate::helpers::audit_verify(
        &[
            "--postgres",
            &url("require"),
            "--postgres-ca-file",
            ca.to_str().unwrap(),
            "--postgres-password-file",
            password_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
}
