//! Start-up refuses a missing or wrong setting with a message naming the key.
//! These run the real binary, so environment overrides are exercised too.

use std::process::Command;

use crate::helpers::config_dir;

fn serve_with(env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripgate"));
    command
        .arg("serve")
        .env("TRIPGATE_CONFIG_DIR", config_dir())
        // Port 0 so a test that unexpectedly starts never collides.
        .env("TRIPGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("TRIPGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tripgate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_setting_stops_start_up_naming_the_key() {
    let cases = [
        (
            "TRIPGATE__PROVIDER__BASE_URL",
            "ftp://provider",
            "provider.base_url",
        ),
        (
            "TRIPGATE__PROVIDER__BASE_URL",
            "not a url",
            "provider.base_url",
        ),
        ("TRIPGATE__SERVER__LISTEN", "nowhere", "server.listen"),
        ("TRIPGATE__CACHE__BACKEND", "memcached", "cache.backend"),
        ("TRIPGATE__CACHE__TTL_SECS", "0", "cache.ttl_secs"),
        ("TRIPGATE__CACHE__TTL_SECS", "five", "cache.ttl_secs"),
        (
            "TRIPGATE__POLICY__PATH",
            "/nonexistent/policy.toml",
            "/nonexistent/policy.toml",
        ),
        ("TRIPGATE__LOG__FORMAT", "xml", "log.format"),
        (
            "TRIPGATE__AUDIT__POSTGRES_WRITE_TIMEOUT_MS",
            "0",
            "audit.postgres_write_timeout_ms",
        ),
        (
            "TRIPGATE__AUDIT__POSTGRES_WRITE_TIMEOUT_MS",
            "2147483648",
            "audit.postgres_write_timeout_ms",
        ),
        ("TRIPGATE_ENV", "staging", "TRIPGATE_ENV"),
    ];
    for (key, value, named) in cases {
        let (ok, stderr) = serve_with(&[(key, value)]);
        assert!(!ok, "{key}={value} was accepted");
        assert!(
            stderr.contains(named),
            "{key}={value}: stderr does not name {named}: {stderr}"
        );
    }
}

#[test]
fn a_missing_setting_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["local.toml", "policy.toml", "messages.toml"] {
        std::fs::copy(config_dir().join(file), dir.path().join(file)).unwrap();
    }
    let base = std::fs::read_to_string(config_dir().join("base.toml")).unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        base.replace("redis_url = ", "# redis_url = "),
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_tripgate"))
        .arg("serve")
        .env("TRIPGATE_CONFIG_DIR", dir.path())
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("redis_url"), "{stderr}");
}

#[test]
fn policy_check_validates_a_document() {
    let run = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_tripgate"))
            .args(["policy", "check"])
            .arg(path)
            .output()
            .unwrap()
    };
    let good = run(&config_dir().join("policy.toml"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("policy.toml");
    std::fs::write(
        &bad,
        "version = \"x\"\n[cities.hangzhou]\nrecognised_issuers = [\"mars\"]\n",
    )
    .unwrap();
    let output = run(&bad);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cities.hangzhou.recognised_issuers[0]"),
        "{stderr}"
    );

    // A city's own message in one language only is refused.
    let shipped = std::fs::read_to_string(config_dir().join("policy.toml")).unwrap();
    let half = shipped.replace(
        "en = \"No health code was found: apply through the Zheliban app",
        "# en = \"",
    );
    assert_ne!(
        half, shipped,
        "the shipped policy changed its Hangzhou message"
    );
    std::fs::write(&bad, half).unwrap();
    let output = run(&bad);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cities.hangzhou.messages.NO_HEALTH_CODE.en: is missing or empty"),
        "{stderr}"
    );
}
