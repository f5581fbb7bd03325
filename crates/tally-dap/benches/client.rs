//! What a report costs the client, beside prio's own share of it, measured side by side:
//! each round times, in alternating order, Prio3SumVec sharding alone (`prio shard`), one HPKE
//! seal of the leader's share (`seal`), and tally's whole report (`report`: the same sharding,
//! both seals, encoding), for the example chart config's vector and for 1,000 entries. Prints
//! medians, the 10th and 90th percentiles, the median of the per-round ratio report / shard,
//! and the report's size on the wire.
//!
//! `cargo bench -p tally-dap --bench client [-- ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

use prio::vdaf::Client as _;
use tally_dap::client::ReportBuilder;
use tally_dap::draft::messages::{Encode, Role};
use tally_dap::draft::{self, HpkeKeypair, Label, VdafParams};

#[path = "../tests/layout/example.rs"]
mod example;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let (leader, helper) = (HpkeKeypair::generate(1), HpkeKeypair::generate(2));
    let vectors = [
        ("example config", example::example_layout().len()),
        ("1,000 counters", 1_000),
    ];
    println!("{rounds} rounds per vector, interleaved; times in microseconds (median [p10, p90])");
    println!(
        "| vector | entries | report bytes | prio shard | seal (leader share) | report (shard + 2 seals + encode) | report / shard, median of rounds |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, len) in vectors {
        let params = VdafParams::sum_vec(len as u32);
        let vdaf = draft::vdaf(&params).unwrap();
        let builder = ReportBuilder::new(rand::random(), &params, 86_400).unwrap();
        let measurement: Vec<u128> = (0..len)
            .map(|_| u128::from(rand::random::<bool>()))
            .collect();
        let (_, shares) = vdaf.shard(&measurement, &[0; 16]).unwrap();
        let leader_share = shares[0].get_encoded().unwrap();
        let info = draft::application_info(Label::InputShare, Role::Client, Role::Leader);
        let encoded_report = || {
            builder
                .build(&measurement, 0, &leader.config, &helper.config)
                .unwrap()
                .get_encoded()
                .unwrap()
        };
        let size = encoded_report().len();
        let (mut shard, mut seal, mut report, mut ratio) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds + rounds / 10 {
            let mut times = [0.0f64; 3];
            for step in 0..3 {
                let which = (step + round) % 3;
                let start = Instant::now();
                match which {
                    0 => {
                        black_box(
                            vdaf.shard(&measurement, &rand::random::<[u8; 16]>())
                                .unwrap(),
                        );
                    }
                    1 => {
                        black_box(
                            draft::seal(&leader.config, &info, &leader_share, b"aad").unwrap(),
                        );
                    }
                    _ => {
                        black_box(encoded_report());
                    }
                }
                times[which] = start.elapsed().as_secs_f64() * 1e6;
            }
            // The first tenth warms caches and clocks.
            if round >= rounds / 10 {
                shard.push(times[0]);
                seal.push(times[1]);
                report.push(times[2]);
                ratio.push(times[2] / times[0]);
            }
        }
        for v in [&mut shard, &mut seal, &mut report, &mut ratio] {
            v.sort_by(f64::total_cmp);
        }
        let cell = |v: &[f64]| {
            format!(
                "{:.0} [{:.0}, {:.0}]",
                percentile(v, 0.5),
                percentile(v, 0.1),
                percentile(v, 0.9)
            )
        };
        println!(
            "| {name} | {len} | {size} | {} | {} | {} | {:.2}x [{:.2}, {:.2}] |",
            cell(&shard),
            cell(&seal),
            cell(&report),
            percentile(&ratio, 0.5),
            percentile(&ratio, 0.1),
            percentile(&ratio, 0.9)
        );
    }
}
