//! Micro-benchmarks of the decision path's CPU work, for repeatable
//! before/after comparisons: `cargo bench --bench hot_path`.
//! Parsing a request, evaluating policy, pseudonymising subjects and sealing
//! an audit record.

use std::hint::black_box;

use chrono::{TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use tripgate::audit::{
    seal, AuditKeys, AuditParty, AuditReason, AuditRecord, ChainHead, Hook, FORMAT,
};
use tripgate::domain::{
    Check, CityCode, Colour, HealthCode, IssuerId, Party, SubjectId, TripCheckBody,
};
use tripgate::domain::{Source, Status, StatusLookup};
use tripgate::policy::{evaluate, Policy};

const BODY: &[u8] = br#"{"trip_id": "T-1001", "city": "hangzhou", "driver": {"id": "D-000042"},
    "passengers": [{"id": "P-0000007"}, {"id": "P-0001234"}, {"id": "13912345678"}]}"#;

fn parse(c: &mut Criterion) {
    c.bench_function("parse a trip request", |b| {
        b.iter(|| {
            let body: TripCheckBody = serde_json::from_slice(black_box(BODY)).unwrap();
            black_box(Check::try_from(body).unwrap())
        })
    });
}

fn policy(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policy.toml");
    let policy = Policy::load(&path).unwrap();
    let city = policy.city(&CityCode::parse("hangzhou").unwrap()).unwrap();
    let now = Utc::now();
    let lookups: Vec<StatusLookup> = ["green", "green", "yellow", "green"]
        .iter()
        .map(|colour| StatusLookup::Known {
            status: Status::Registered(HealthCode {
                colour: Colour::new(colour),
                issuer: IssuerId::new("hangzhou"),
                renewed_at: now - TimeDelta::hours(3),
                colour_since: None,
            }),
            source: Source::L1,
            fetched_at: now,
        })
        .collect();
    let parties: Vec<(Party, &StatusLookup)> = lookups
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                if i == 0 {
                    Party::Driver
                } else {
                    Party::Passenger(i - 1)
                },
                l,
            )
        })
        .collect();
    c.bench_function("evaluate a four-party trip", |b| {
        b.iter(|| {
            black_box(evaluate(
                &policy,
                city,
                Hook::Trip,
                black_box(&parties),
                None,
                now,
            ))
        })
    });
}

fn hashing(c: &mut Criterion) {
    let keys = AuditKeys::new(
        &[("k1".into(), "a benchmark key, long enough".into())],
        "k1",
    )
    .unwrap();
    let subject = SubjectId::parse("13912345678").unwrap();
    c.bench_function("pseudonymise a subject", |b| {
        b.iter(|| black_box(keys.subject_ref(black_box(&subject))))
    });
    let record = AuditRecord {
        format: FORMAT,
        decision_id: uuid::Uuid::now_v7().to_string(),
        decided_at_us: Utc::now().timestamp_micros(),
        hook: Hook::Trip,
        trip_id: "T-1001".into(),
        city: "hangzhou".into(),
        decision: "reject".into(),
        degraded: false,
        policy_version: "2026-11-26.1".into(),
        instance_id: "tripgate-0".into(),
        key_id: "k1".into(),
        reasons: vec![AuditReason {
            party: "passenger".into(),
            index: Some(1),
            code: "HEALTH_CODE_YELLOW".into(),
            rule: "hangzhou.trip.health_code".into(),
            detail: None,
        }],
        parties: (0..4)
            .map(|i| AuditParty {
                party: if i == 0 { "driver" } else { "passenger" }.into(),
                index: (i > 0).then_some(i - 1),
                subject_ref: keys.subject_ref(&subject),
                status: "green".into(),
                color: Some("green".into()),
                issuer: Some("hangzhou".into()),
                source: Some("l1".into()),
                status_age_secs: Some(10_800),
                eligible: None,
                eligible_after_us: None,
            })
            .collect(),
        appeal: None,
        client: Some("dispatch".into()),
    };
    let head = ChainHead::genesis();
    c.bench_function("seal an audit record", |b| {
        b.iter(|| black_box(seal(&head, black_box(record.clone()))))
    });
}

criterion_group!(benches, parse, policy, hashing);
criterion_main!(benches);
