//! Issue 9: the `status` ad-hoc command (xep/status-command.md) through the
//! router, no socket: a real sled store, the document's examples compared by
//! value, paging, the filter, previews, and nobody else's messages.

use minidom::Element;

mod common;
use common::{Router, Varies, World, XepDoc, caps_ver, millis};

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";

impl World {
    fn new(extra: &str) -> Self {
        World(Router::new(extra, 1_795_000_000_000))
    }

    /// `contact` lets `watcher` see their presence; online unless `offline`.
    fn grant(&mut self, watcher: &str, contact: &str, online: bool) {
        let tracked = format!("{watcher}\\40localhost@chat.localhost");
        self.send(&format!(
            "<presence type='subscribed' from='{contact}@localhost' to='{tracked}'/>"
        ));
        if online {
            self.send(&format!(
                "<presence from='{contact}@localhost/res' to='{tracked}'/>"
            ));
        } else {
            self.send(&format!(
                "<presence type='unavailable' from='{contact}@localhost/res' to='{tracked}'/>"
            ));
        }
    }

    fn chat(&mut self, from: &str, to: &str, id: &str, body: &str) -> Vec<Element> {
        self.send(&format!(
            "<message type='chat' id='{id}' from='{from}@localhost/res' to='{to}\\40localhost@chat.localhost'><body>{body}</body>\
             <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        ))
    }

    /// Runs the command as `user`: `payload` inside `<command/>`.
    fn command(&mut self, user: &str, attrs: &str, payload: &str) -> Element {
        let out = self.send(&format!(
            "<iq type='set' id='c' from='{user}@localhost/res' to='chat.localhost'>\
             <command xmlns='{COMMANDS}' node='status' {attrs}>{payload}</command></iq>"
        ));
        assert_eq!(out.len(), 1);
        out.into_iter().next().unwrap()
    }

    /// The first page: execute, then submit the form with `with`.
    fn first_page(&mut self, user: &str, with: &str) -> Element {
        let form = self.command(user, "action='execute'", "");
        let session = cmd(&form).attr("sessionid").unwrap().to_owned();
        let field = if with.is_empty() {
            String::new()
        } else {
            format!("<field var='with'><value>{with}</value></field>")
        };
        self.command(
            user,
            &format!("sessionid='{session}' action='next'"),
            &format!("<x xmlns='{DATA}' type='submit'>{field}</x>"),
        )
    }
}

fn cmd(iq: &Element) -> &Element {
    iq.get_child("command", COMMANDS)
        .unwrap_or_else(|| panic!("no command in {}", String::from(iq)))
}

/// The rows of a result page: each item's fields as (var, value).
fn rows(iq: &Element) -> Vec<Vec<(String, String)>> {
    let x = cmd(iq).get_child("x", DATA).unwrap();
    x.children()
        .filter(|c| c.name() == "item")
        .map(|item| {
            item.children()
                .map(|f| {
                    let v = f
                        .get_child("value", DATA)
                        .map(|v| v.text())
                        .unwrap_or_default();
                    (f.attr("var").unwrap().to_owned(), v)
                })
                .collect()
        })
        .collect()
}

fn col(rows: &[Vec<(String, String)>], var: &str) -> Vec<String> {
    rows.iter()
        .map(|r| {
            r.iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

fn actions(iq: &Element) -> Vec<String> {
    cmd(iq)
        .get_child("actions", COMMANDS)
        .map(|a| a.children().map(|c| c.name().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn the_document_story() {
    let doc = XepDoc::load("status-command.md");
    let mut w = World::new("[status]\npreview_chars = 20\n");
    w.grant("alice", "bob", true);
    w.grant("alice", "carol", false);
    for u in ["alice", "bob", "carol"] {
        w.send(&format!(
            "<presence from='{u}@localhost/res' to='team@chat.localhost/{u}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
    }
    w.send_at(
        "2026-11-30T09:00:00Z",
        "<message type='chat' id='m1' from='alice@localhost/res' to='bob\\40localhost@chat.localhost'><body>Lunch at noon? The usual place</body>\
         <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
    );
    w.send_at(
        "2026-11-30T09:00:04Z",
        "<message from='bob@localhost/res' to='alice\\40localhost@chat.localhost'><received xmlns='urn:xmpp:receipts' id='m1'/></message>",
    );
    w.send_at(
        "2026-11-30T09:01:30Z",
        "<message type='chat' from='bob@localhost/res' to='alice\\40localhost@chat.localhost'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>",
    );
    w.send_at(
        "2026-11-30T09:02:00Z",
        "<message type='chat' id='m2' from='alice@localhost/res' to='carol\\40localhost@chat.localhost'><body>Are you coming?</body></message>",
    );
    let out = w.send_at(
        "2026-11-30T09:03:00Z",
        "<message type='groupchat' id='g1' from='alice@localhost/res' to='team@chat.localhost'><body>Release notes are up</body></message>",
    );
    let sid = out[0]
        .get_child("stanza-id", "urn:xmpp:sid:0")
        .unwrap()
        .attr("id")
        .unwrap()
        .to_owned();
    w.send_at(
        "2026-11-30T09:04:10Z",
        &format!("<message type='groupchat' from='bob@localhost/res' to='team@chat.localhost'><displayed xmlns='urn:xmpp:chat-markers:0' id='{sid}'/></message>"),
    );

    let session = [Varies {
        path: "iq/command",
        attr: "sessionid",
        why: "the first stage's session id is made up from the clock",
    }];
    let page = [Varies {
        path: "iq/command",
        attr: "sessionid",
        why: "a page's session id holds sequence numbers, which depend on everything stored before",
    }];
    let ask = doc.example("iq", "set", Some("status-1"));
    let got = w.handle_at(millis("2026-11-30T09:10:00Z"), &ask.el);
    doc.example("iq", "result", Some("status-1")).assert_answer(
        "the first stage",
        &got[0],
        &session,
    );
    let ask = doc.example("iq", "set", Some("status-2"));
    let got = w.handle_at(millis("2026-11-30T09:10:05Z"), &ask.el);
    doc.example("iq", "result", Some("status-2"))
        .assert_answer("the first page", &got[0], &page);
    let ask = doc.example("iq", "set", Some("status-3"));
    let got = w.handle_at(millis("2026-11-30T09:10:09Z"), &ask.el);
    doc.example("iq", "result", Some("status-3")).assert_answer(
        "filtered by a tracked address",
        &got[0],
        &page,
    );
    doc.assert_all_checked();
}

#[test]
fn pages_go_newest_first_forward_and_back() {
    let mut w = World::new("");
    w.grant("alice", "bob", true);
    w.grant("alice", "dave", true);
    for i in 0..45 {
        let to = if i % 3 == 0 { "dave" } else { "bob" };
        w.chat("alice", to, &format!("m{i}"), "hello");
    }
    let p1 = w.first_page("alice", "");
    assert_eq!(cmd(&p1).attr("status"), Some("executing"));
    assert_eq!(actions(&p1), ["next", "complete"]);
    let ids: Vec<String> = (25..45).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(col(&rows(&p1), "id"), ids);
    let session = cmd(&p1).attr("sessionid").unwrap().to_owned();
    let p2 = w.command("alice", &format!("sessionid='{session}' action='next'"), "");
    let ids: Vec<String> = (5..25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(col(&rows(&p2), "id"), ids);
    assert_eq!(actions(&p2), ["prev", "next", "complete"]);
    let s2 = cmd(&p2).attr("sessionid").unwrap().to_owned();
    let p3 = w.command("alice", &format!("sessionid='{s2}' action='next'"), "");
    assert_eq!(col(&rows(&p3), "id"), ["m4", "m3", "m2", "m1", "m0"]);
    assert_eq!(actions(&p3), ["prev", "complete"]);
    let s3 = cmd(&p3).attr("sessionid").unwrap().to_owned();
    let back = w.command("alice", &format!("sessionid='{s3}' action='prev'"), "");
    assert_eq!(col(&rows(&back), "id"), col(&rows(&p2), "id"));
    let done = w.command("alice", &format!("sessionid='{s3}' action='complete'"), "");
    assert_eq!(cmd(&done).attr("status"), Some("completed"));

    // The filter: dave only, by bare JID or tracked address alike.
    let dave = w.first_page("alice", "dave@localhost");
    let ids: Vec<String> = (0..45)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(col(&rows(&dave), "id"), ids[..ids.len().min(20)].to_vec());
    assert!(
        col(&rows(&dave), "to")
            .iter()
            .all(|t| t == "dave@localhost")
    );
    let tracked = w.first_page("alice", "dave\\40localhost@chat.localhost");
    assert_eq!(rows(&tracked), rows(&dave));
    // Without preview_chars, no preview column and no text anywhere.
    let x = cmd(&p1).get_child("x", DATA).unwrap();
    assert!(!String::from(x).contains("hello"));
}

#[test]
fn nobody_sees_anothers_messages() {
    let mut w = World::new("[status]\npreview_chars = 10\n");
    w.grant("alice", "bob", true);
    w.grant("bob", "alice", true);
    w.chat("alice", "bob", "secret-1", "alice's secret");
    w.chat("bob", "alice", "b1", "bob's");
    let bob = w.first_page("bob", "");
    assert_eq!(col(&rows(&bob), "id"), ["b1"]);
    assert_eq!(col(&rows(&bob), "preview"), ["bob's"]);
    // Someone on another server who never sent through tidemark: nothing.
    let out = w.send(&format!(
        "<iq type='set' id='x' from='mallory@evil.example/res' to='chat.localhost'>\
         <command xmlns='{COMMANDS}' node='status' sessionid='status1:1:18446744073709551615:0:c:alice@localhost' action='next'/></iq>"
    ));
    assert!(rows(&out[0]).is_empty(), "{}", String::from(&out[0]));
    // A forged session reads only the asker's own list.
    let out = w.send(&format!(
        "<iq type='set' id='x' from='bob@localhost/res' to='chat.localhost'>\
         <command xmlns='{COMMANDS}' node='status' sessionid='status1:1:18446744073709551615:0:c:alice@localhost' action='prev'/></iq>"
    ));
    assert!(!String::from(&out[0]).contains("secret"));
    // A session that is not one of ours is refused, not guessed at.
    let out = w.send(&format!(
        "<iq type='set' id='x' from='bob@localhost/res' to='chat.localhost'>\
         <command xmlns='{COMMANDS}' node='status' sessionid='status1:zz' action='prev'/></iq>"
    ));
    assert_eq!(out[0].attr("type"), Some("error"));
}

fn id_of(row: &[(String, String)]) -> String {
    row.iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[test]
fn every_message_is_reached_page_by_page_and_back() {
    let mut w = World::new("");
    w.grant("alice", "bob", true);
    w.grant("alice", "carol", true);
    for i in 0..150 {
        w.chat("alice", "bob", &format!("m{i}"), "x");
        w.chat("alice", "carol", &format!("n{i}"), "x");
    }
    let mut ids: Vec<String> = vec![];
    let mut sessions = vec![];
    let mut page = w.first_page("alice", "");
    loop {
        let r = rows(&page);
        ids.extend(r.iter().map(|row| id_of(row)));
        sessions.push(cmd(&page).attr("sessionid").unwrap().to_owned());
        if !actions(&page).contains(&"next".to_owned()) {
            break;
        }
        let s = sessions.last().unwrap().clone();
        page = w.command("alice", &format!("sessionid='{s}' action='next'"), "");
    }
    // All 300, newest first, each once: nothing is trimmed any more.
    let want: Vec<String> = (0..150)
        .rev()
        .flat_map(|i| [format!("n{i}"), format!("m{i}")])
        .collect();
    assert_eq!(ids, want);
    assert_eq!(sessions.len(), 15);
    // prev from the last page gives the page before it.
    let last = sessions.last().unwrap().clone();
    let back = w.command("alice", &format!("sessionid='{last}' action='prev'"), "");
    let back_ids: Vec<String> = rows(&back).iter().map(|row| id_of(row)).collect();
    assert_eq!(back_ids, want[260..280]);
    assert_eq!(cmd(&back).attr("sessionid"), Some(sessions[13].as_str()));
}

/// A message to someone whose client sends no read markers says so in its
/// row, as the status query does (xep/status.md), instead of a bare
/// "delivered".
#[test]
fn a_row_says_when_read_status_will_not_come() {
    let mut w = World::new("");
    w.grant("alice", "bob", false);
    let info = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity category='client' type='console' name='Profanity'/>\
        <feature var='urn:xmpp:receipts'/></query>";
    let ver = caps_ver(info);
    let out = w.send(&format!(
        "<presence from='bob@localhost/res' to='alice\\40localhost@chat.localhost'>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{ver}'/></presence>"
    ));
    let question = out.iter().find(|e| e.name() == "iq").expect("asked");
    let id = question.attr("id").unwrap().to_owned();
    w.send(&format!(
        "<iq type='result' id='{id}' from='bob@localhost/res' to='chat.localhost'>{}</iq>",
        info.replace("disco#info'>", &format!("disco#info' node='n#{ver}'>"))
    ));
    w.chat("alice", "bob", "m1", "hello");
    w.send(
        "<message from='bob@localhost/res' to='alice\\40localhost@chat.localhost/res'>\
         <received xmlns='urn:xmpp:receipts' id='m1'/></message>",
    );
    let page = w.first_page("alice", "");
    let rows = rows(&page);
    assert_eq!(col(&rows, "state"), ["delivered"]);
    assert_eq!(
        col(&rows, "note"),
        ["read status not available: bob@localhost's client does not send read markers"]
    );
}

/// Gajim 1.7.3's command window stays at "Executing…" on a multi-item
/// result form (seen under Xvfb): a client whose caps say Gajim gets the
/// page as one form of short fields, and nobody else's page changes.
#[test]
fn gajim_gets_the_page_as_one_form_of_short_fields() {
    let mut w = World::new("");
    w.grant("alice", "bob", true);
    // alice's Gajim: its presence to bob's tracked address carries its caps.
    let info = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity category='client' type='pc' name='Gajim'/>\
        <feature var='urn:xmpp:receipts'/><feature var='urn:xmpp:chat-markers:0'/></query>";
    let ver = caps_ver(info);
    w.send(
        "<presence type='subscribed' from='alice@localhost' to='bob\\40localhost@chat.localhost'/>",
    );
    let out = w.send(&format!(
        "<presence from='alice@localhost/gajim' to='bob\\40localhost@chat.localhost'>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='{ver}'/></presence>"
    ));
    let question = out.iter().find(|e| e.name() == "iq").expect("asked");
    let id = question.attr("id").unwrap().to_owned();
    w.send(&format!(
        "<iq type='result' id='{id}' from='alice@localhost/gajim' to='chat.localhost'>{}</iq>",
        info.replace(
            "disco#info'>",
            &format!("disco#info' node='https://gajim.org#{ver}'>")
        )
    ));
    w.chat("alice", "bob", "m1", "hello");
    let ask = |w: &mut World, resource: &str| {
        let run = |w: &mut World, attrs: &str, payload: &str| {
            let out = w.send(&format!(
                "<iq type='set' id='c' from='alice@localhost/{resource}' to='chat.localhost'>\
                 <command xmlns='{COMMANDS}' node='status' {attrs}>{payload}</command></iq>"
            ));
            out.into_iter().next().unwrap()
        };
        let form = run(w, "action='execute'", "");
        let session = cmd(&form).attr("sessionid").unwrap().to_owned();
        run(
            w,
            &format!("sessionid='{session}' action='next'"),
            &format!("<x xmlns='{DATA}' type='submit'/>"),
        )
    };
    let gajim = ask(&mut w, "gajim");
    let x = cmd(&gajim).get_child("x", DATA).expect("a form");
    assert!(
        x.get_child("reported", DATA).is_none(),
        "{}",
        String::from(&gajim)
    );
    let fields: Vec<(String, String)> = x
        .children()
        .filter(|c| c.name() == "field")
        .map(|f| {
            (
                f.attr("var").unwrap().to_owned(),
                f.get_child("value", DATA)
                    .map(Element::text)
                    .unwrap_or_default(),
            )
        })
        .collect();
    let vars: Vec<&str> = fields.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        vars,
        ["1-to", "1-sent", "1-state", "1-read-by", "1-id"],
        "{fields:?}"
    );
    assert_eq!(fields[0].1, "bob@localhost");
    assert_eq!(fields[2].1, "sent");
    assert_eq!(fields[4].1, "m1");
    assert!(cmd(&gajim).get_child("note", COMMANDS).is_none());
    // Her other client, whose caps tidemark never saw, gets the page as
    // specified.
    let other = ask(&mut w, "res");
    assert!(
        cmd(&other)
            .get_child("x", DATA)
            .unwrap()
            .get_child("reported", DATA)
            .is_some()
    );
    assert_eq!(col(&rows(&other), "id"), ["m1"]);
}
