//! Memory per room, measured by counting the heap (not a pass/fail test:
//! `cargo test --release --test room_memory -- --ignored --nocapture`
//! prints the figures the README quotes).
//!
//! Rooms are filled through the router with a real sled store. What a room
//! costs in memory while people are in it is the heap freed when they all
//! leave (leaving writes nothing to the store, so sled's cache is the same
//! before and after).

use std::path::Path;
use std::sync::Arc;

use tidemark::config::Config;
use tidemark::service::Tidemark;
use tidemark::store::{SledStore, Store};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

fn tidemark(extra: &str) -> Tidemark {
    // A few users join thousands of rooms in simulated milliseconds: lift
    // the per-sender rate limit, which is not what is measured here.
    let text = format!(
        "[component]\njid = \"chat.localhost\"\nserver = \"127.0.0.1:5347\"\nsecret = \"s\"\n[storage]\npath = \"unused\"\n[limits]\nrate_per_second = 1e9\nrate_burst = 4000000000\n{extra}"
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    Tidemark::new(config, store, 1_795_000_000_000).unwrap()
}

/// A join as a typical client sends it: MUC element and entity caps.
fn join(user: &str, room: &str) -> String {
    with_ns(&format!(
        "<presence from='{user}@localhost/phone' to='{room}@chat.localhost/{user}'>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://conversations.im' ver='6ZKvNP3ih8L1C0sUb2nKjvHYJuU='/>\
         <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='20'/></x></presence>"
    ))
}

fn leave(user: &str, room: &str) -> String {
    with_ns(&format!(
        "<presence type='unavailable' from='{user}@localhost/phone' to='{room}@chat.localhost/{user}'/>"
    ))
}

fn say(user: &str, room: &str, id: &str) -> String {
    with_ns(&format!(
        "<message type='groupchat' id='{id}' from='{user}@localhost/phone' to='{room}@chat.localhost'><body>hello</body></message>"
    ))
}

fn measure(rooms: usize, members: usize) {
    let mut tm = tidemark(&format!(
        "[groups]\nmax_rooms_per_creator = {}\n",
        rooms + 1
    ));
    let mut now = 1_795_000_000_000;
    let mut send = |tm: &mut Tidemark, xml: String| {
        now += 1;
        drop(tm.handle(&xml.parse().unwrap(), now));
    };
    for r in 0..rooms {
        for m in 0..members {
            send(&mut tm, join(&format!("user{m}"), &format!("room{r}")));
        }
        // A message loads the room's read frontier, as in real use.
        send(&mut tm, say("user0", &format!("room{r}"), "m1"));
    }
    tm.store().flush().unwrap();
    let occupied = live();
    for r in 0..rooms {
        for m in 0..members {
            send(&mut tm, leave(&format!("user{m}"), &format!("room{r}")));
        }
    }
    let empty = live();
    assert_eq!(tm.rooms().live_count(), 0);
    let per_room = (occupied - empty) / rooms as isize;
    println!(
        "{rooms} rooms of {members} members, everyone in: {per_room} bytes per room \
         ({} per member); once all left: {} rooms in memory",
        per_room / members as isize,
        tm.rooms().live_count()
    );
}

#[test]
#[ignore = "prints memory figures; run with --ignored --nocapture"]
fn memory_per_room() {
    measure(1000, 1);
    measure(1000, 10);
    measure(100, 100);
    measure(10, 1000);

    // Refused creations keep nothing: 50,000 joins to new room names from a
    // domain that may not create rooms (the 377 MB).
    let mut tm = tidemark("[groups]\nroom_creators = [\"example.org\"]\n");
    let before = live();
    for r in 0..50_000u64 {
        let p = join("mallory", &format!("r{r}"));
        drop(tm.handle(&p.parse().unwrap(), 1_795_000_000_000 + r));
    }
    println!(
        "50000 refused room creations: {} bytes kept, {} rooms in memory",
        live() - before,
        tm.rooms().live_count()
    );
}

const NS: &str = "jabber:component:accept";

/// Puts the component namespace on the stanza, as the server's stream has it.
fn with_ns(xml: &str) -> String {
    xml.replacen(' ', &format!(" xmlns='{NS}' "), 1)
}
