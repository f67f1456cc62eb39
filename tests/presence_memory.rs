//! Memory per tracked presence, measured by counting the heap bytes the
//! presence book holds. Ignored by default (it measures, it does not check):
//! `cargo test --release --test presence_memory -- --ignored --nocapture`.

use minidom::Element;
use tidemark::incoming::Compact;
use tidemark::presence::PresenceBook;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

fn measure(contacts: usize, resources: usize, status: &str) -> f64 {
    let presence: Element = format!(
        "<presence xmlns='jabber:component:accept'><show>away</show><status>{status}</status>\
         <priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>"
    )
    .parse()
    .unwrap();
    let compact = Compact::of(&presence);
    let names: Vec<(String, Vec<String>)> = (0..contacts)
        .map(|i| {
            (
                format!("contact{i:06}@example.org"),
                (0..resources)
                    .map(|r| format!("phone-{r:02}-abcdef"))
                    .collect(),
            )
        })
        .collect();
    let before = live();
    let mut book = PresenceBook::default();
    for (contact, res) in &names {
        for r in res {
            book.update(contact, r, Some(compact.clone()));
        }
    }
    let bytes = live() - before;
    assert_eq!(book.kept(), contacts * resources);
    bytes as f64 / (contacts * resources) as f64
}

#[test]
#[ignore = "a measurement, run by hand"]
fn bytes_per_tracked_presence() {
    for (contacts, resources, status) in [
        (10_000, 1, ""),
        (10_000, 1, "In a meeting until 3"),
        (5_000, 4, "In a meeting until 3"),
        (1_000, 16, "In a meeting until 3"),
    ] {
        let per = measure(contacts, resources, status);
        println!(
            "{contacts} contacts x {resources} resources, status {} bytes: {per:.0} bytes per tracked presence",
            status.len()
        );
    }
}
