//! Request bodies: subjects drawn with a Zipf-like popularity.

#[allow(unused_imports)]
use super::*;

/// Zipf-like sampler over 0..n with exponent s (inverse CDF by bisection).
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// Subject ids are permuted so popular ones are spread over the id space.
pub(crate) fn scatter(rank: usize, n: u64) -> u64 {
    (rank as u64).wrapping_mul(2_654_435_761) % n
}

pub(crate) fn write_bodies(path: &Path, lines: usize, candidates: usize, seed: u64) {
    let drivers = Zipf::new(DRIVERS as usize, 1.0);
    let passengers = Zipf::new(PASSENGERS as usize, 1.0);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..lines {
        let mut seen = std::collections::HashSet::new();
        let mut pick_passenger = |rng: &mut fastrand::Rng| loop {
            let id = format!("P-{:07}", scatter(passengers.sample(rng), PASSENGERS));
            if seen.insert(id.clone()) {
                return json!({"id": id});
            }
        };
        let body = if candidates == 0 {
            let count = rng.usize(1..=3);
            let ps: Vec<Value> = (0..count).map(|_| pick_passenger(&mut rng)).collect();
            json!({"trip_id": format!("T-{n}"), "city": "hangzhou",
                   "driver": {"id": format!("D-{:06}", scatter(drivers.sample(&mut rng), DRIVERS))},
                   "passengers": ps})
        } else {
            let mut ds = std::collections::BTreeSet::new();
            while ds.len() < candidates {
                ds.insert(scatter(drivers.sample(&mut rng), DRIVERS));
            }
            json!({"trip_id": format!("T-{n}"), "city": "hangzhou",
                   "passengers": [pick_passenger(&mut rng)],
                   "drivers": ds.iter().map(|d| json!({"id": format!("D-{d:06}")})).collect::<Vec<_>>()})
        };
        writeln!(out, "{body}").unwrap();
    }
}

/// Bodies that together name `distinct` different passengers, once each.
pub(crate) fn write_distinct_bodies(path: &Path, distinct: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut next = 0;
    let mut n = 0;
    while next < distinct {
        let ps: Vec<Value> = (0..3)
            .map(|k| json!({"id": format!("P-{:07}", (next + k) % PASSENGERS)}))
            .collect();
        next += 3;
        n += 1;
        writeln!(out, "{}", json!({"trip_id": format!("U-{n}"), "city": "hangzhou", "driver": {"id": format!("D-{:06}", n % DRIVERS)}, "passengers": ps})).unwrap();
    }
}

/// Driver-shift and passenger-order bodies made from trip bodies: the same
/// subjects, so the same popularity.
pub(crate) fn write_shift_and_order_bodies(trips: &Path, shifts: &Path, orders: &Path) {
    let text = std::fs::read_to_string(trips).unwrap();
    let mut shift_out = std::io::BufWriter::new(std::fs::File::create(shifts).unwrap());
    let mut order_out = std::io::BufWriter::new(std::fs::File::create(orders).unwrap());
    for (n, line) in text.lines().enumerate() {
        let trip: Value = serde_json::from_str(line).unwrap();
        let shift = json!({"city": trip["city"], "driver": trip["driver"]});
        let order = json!({"city": trip["city"], "order_id": format!("O-{n}"), "passengers": trip["passengers"]});
        writeln!(shift_out, "{shift}").unwrap();
        writeln!(order_out, "{order}").unwrap();
    }
}
