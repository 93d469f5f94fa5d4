//! `tripgate healthcheck` and `tripgate config check`: what an operator (or
//! a container runtime) asks of an installation without serving it.

use std::time::Duration;

use crate::config::Settings;

/// Asks the admin listener named by the configuration for `/readyz`:
/// true when it answers 200 (ready or degraded), false otherwise (down,
/// not listening, the audit store unwritable).
pub async fn healthcheck() -> Result<bool, String> {
    let settings = Settings::load().map_err(|e| crate::telemetry::error_chain(&e))?;
    let mut address = settings.server.admin_listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://{address}/readyz");
    match http.get(&url).send().await {
        Ok(response) if response.status().is_success() => {
            println!("ready: {url} answered {}", response.status());
            Ok(true)
        }
        Ok(response) => {
            println!("not ready: {url} answered {}", response.status());
            Ok(false)
        }
        Err(error) => {
            println!(
                "not ready: {url}: {}",
                crate::telemetry::error_chain(&error)
            );
            Ok(false)
        }
    }
}

/// Loads, checks and prints the effective configuration (every secret
/// read and checked, none printed; URL passwords hidden).
pub fn config_check() -> Result<(), String> {
    let mut settings = Settings::load().map_err(|e| crate::telemetry::error_chain(&e))?;
    settings
        .parse()
        .map_err(|e| crate::telemetry::error_chain(&e))?;
    settings.cache.redis_url = without_password(&settings.cache.redis_url);
    for node in &mut settings.cache.redis_cluster_nodes {
        *node = without_password(node);
    }
    settings.audit.postgres_url = without_password(&settings.audit.postgres_url);
    println!("{settings:#?}");
    println!("configuration ({}) is valid", settings.environment.as_str());
    Ok(())
}

/// The URL with any password replaced by `***`.
fn without_password(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => "<not a URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            super::without_password("postgres://app:s3cret@db:5432/tripgate"),
            "postgres://app:***@db:5432/tripgate"
        );
        assert_eq!(
            super::without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
