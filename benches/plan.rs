//! `roster plan` at scale (make bench): generated trees of 2,000 and 20,000 Memberships — in 20
//! organizations, and 20,000 in a single one (a scan per member would show there) — read,
//! checked (schema, CEL, webhook) and planned, as `roster plan -f` does. Reported per thousand
//! objects; the target is well under a second per thousand.

use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use roster::review::{self, Options, render, sample, schema::Schemas};

fn main() {
    let now = Timestamp::now();
    let dir = std::env::temp_dir().join(format!("roster-bench-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    println!(
        "| tree | objects | read + schema + CEL | webhook validate() | plan() | render | total | per 1,000 objects |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (orgs, projects, members) in [(20, 10, 100), (20, 10, 1000), (1, 10, 20000)] {
        let file = dir.join(format!("{orgs}x{projects}x{members}.yaml"));
        std::fs::write(
            &file,
            sample::tree_yaml("bench-", orgs, projects, members, now),
        )
        .expect("write");
        let opts = Options::new(now);
        let schemas = Schemas::new();
        let t0 = Instant::now();
        let (tree, read) =
            review::read(std::slice::from_ref(&file), &opts, &schemas).expect("read");
        let t1 = Instant::now();
        let violations = review::tree::admission(&tree, None, &opts.caller, &opts.policy, opts.now);
        let t2 = Instant::now();
        let report = review::report::report(&tree, &opts.settings, opts.now);
        let t3 = Instant::now();
        let out = render::plan(&report, &violations, render::Format::Json);
        let t4 = Instant::now();
        assert!(
            read.is_empty() && violations.is_empty(),
            "a generated tree is valid"
        );
        assert!(out.len() > 1000);
        let objects = tree.organizations.len()
            + tree.projects.len()
            + tree.memberships.len()
            + tree.namespaces.len();
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1000.0;
        println!(
            "| {orgs} × {projects} × {members} | {objects} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            ms(t0, t1),
            ms(t1, t2),
            ms(t2, t3),
            ms(t3, t4),
            ms(t0, t4),
            ms(t0, t4) / objects as f64 * 1000.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
