//! `tidemark --config FILE`: load the config, open the store, serve.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tidemark::component::{self, ComponentError};
use tidemark::config::Config;
use tidemark::config::StorageBackend;
use tidemark::service::Tidemark;
use tidemark::store::{PgOptions, PgStore, SledStore, Store, StoreError, export};
use tracing::field::{Field, Visit};
use tracing::{error, info, warn};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

tidemark::global_allocator!();

const USAGE: &str = "usage: tidemark --config FILE [--check-config | --export OUT | --import IN]

  --config FILE    the TOML config (see config/tidemark.toml)
  --check-config   validate the config and exit
  --export OUT     write a backup of the store to OUT (- for stdout) and exit;
                   tidemark must be stopped (sled locks its directory)
  --import IN      load a backup into the store at storage.path, which must
                   be new, and exit
  --version        print the version";

/// Exit codes an admin or a supervisor can act on.
const EXIT_CONFIG: u8 = 2;
const EXIT_AUTH: u8 = 3;
const EXIT_STORAGE: u8 = 4;

fn main() -> ExitCode {
    let mut config_path: Option<PathBuf> = None;
    let mut check_only = false;
    let mut export_to: Option<PathBuf> = None;
    let mut import_from: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config_path = args.next().map(PathBuf::from),
            "--check-config" => check_only = true,
            "--export" => export_to = args.next().map(PathBuf::from),
            "--import" => import_from = args.next().map(PathBuf::from),
            "--version" | "-V" => {
                println!("tidemark {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("tidemark: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let Some(config_path) = config_path else {
        eprintln!("tidemark: --config FILE is required\n{USAGE}");
        return ExitCode::from(EXIT_CONFIG);
    };
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tidemark: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check_only {
        println!("tidemark: {} is valid", config_path.display());
        return ExitCode::SUCCESS;
    }
    if export_to.is_some() || import_from.is_some() {
        return backup(&config, export_to, import_from);
    }
    init_tracing(&config.log.level);
    install_panic_hook();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidemark: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

/// `--export` / `--import`: the store as text, for backups (DESIGN.md: sled
/// calls itself beta, so the data must be able to leave it).
fn backup(config: &Config, export_to: Option<PathBuf>, import_from: Option<PathBuf>) -> ExitCode {
    let opened = match (&config.storage.backend, &import_from) {
        (StorageBackend::Postgres { url, password_file }, Some(_)) => {
            PgOptions::new(url, password_file.as_deref())
                .and_then(|o| PgStore::open(&o))
                .map_err(|e| open_failure(config, &e))
                .and_then(|pg| import_alone(config, pg))
        }
        _ => open_store(config).map_err(|e| open_failure(config, &e)),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tidemark: {e}");
            return ExitCode::from(EXIT_STORAGE);
        }
    };
    let store = &*store;
    let result = match (export_to, import_from) {
        (Some(out), None) if out.as_os_str() == "-" => export::export(
            store,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        (Some(out), None) => std::fs::File::create(&out)
            .map_err(Into::into)
            .and_then(|f| export::export(store, &mut std::io::BufWriter::new(f))),
        (None, Some(input)) => std::fs::File::open(&input)
            .map_err(Into::into)
            .and_then(|f| export::import(store, std::io::BufReader::new(f))),
        _ => {
            eprintln!("tidemark: give --export or --import, not both\n{USAGE}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match result {
        Ok(n) => {
            eprintln!("tidemark: {n} entries");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tidemark: {e}");
            ExitCode::from(EXIT_STORAGE)
        }
    }
}

/// An import writes where no tidemark serves (sled's directory lock sees
/// to that on sled): on PostgreSQL it takes the serving tidemark's lock for
/// its session (a tidemark started meanwhile stands by), and is refused if
/// one serves, since that one answers from what it wrote and read itself
/// (the PostgreSQL store's known rows) and would not see the import.
fn import_alone(config: &Config, pg: PgStore) -> Result<Arc<dyn Store>, String> {
    let jid = config.component.jid.as_str();
    match pg.try_lead(jid) {
        Ok(true) => Ok(Arc::new(pg)),
        Ok(false) => Err(format!(
            "another tidemark serves {jid} from this PostgreSQL database; stop it (and its standbys) before importing"
        )),
        Err(e) => Err(format!("cannot import: {e}")),
    }
}

/// Opens the store `storage.backend` names (issue 12: sled or PostgreSQL).
fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.storage.backend {
        StorageBackend::Sled => Arc::new(SledStore::open(
            &config.storage.path,
            config.storage.cache_bytes,
        )?),
        StorageBackend::Postgres { url, password_file } => Arc::new(PgStore::open(
            &PgOptions::new(url, password_file.as_deref())?,
        )?),
    })
}

/// What to tell an admin whose store would not open.
fn open_failure(config: &Config, e: &StoreError) -> String {
    match (e, &config.storage.backend) {
        (StoreError::Locked { .. }, _) => e.to_string(),
        (_, StorageBackend::Sled) => format!(
            "cannot open the store at {}: {e}",
            config.storage.path.display()
        ),
        (_, StorageBackend::Postgres { url, .. }) => {
            format!("cannot open the PostgreSQL store at {url}: {e}")
        }
    }
}

/// Panics are caught per stanza (the service goes on); their message goes
/// to the log like everything else instead of a bare stderr dump.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                error!(target: "panic", "{info}\n{backtrace}")
            }
            _ => error!(target: "panic", "{info}"),
        }
    }));
}

fn init_tracing(level: &str) {
    // sled is chatty below warn, PostgreSQL passes on every NOTICE (an
    // existing table on each start); xmpp-parsers logs whole stanzas.
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},xmpp_parsers=info,sled=warn,postgres=warn,tokio_postgres=warn"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(Fields)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The log's fields exactly as tracing-subscriber's `DefaultFields` writes
/// them, faster for printable ASCII text when the log has no colours.
/// Every stanza is handled in a span that carries its kind, id and
/// addresses, and the fmt layer formats those when the span is made,
/// whatever is logged in it: through `str`'s `Debug` (which looks at each
/// character through the Unicode tables) and a `write!` per field, that was
/// a twentieth of handling a stanza.
struct Fields;

impl<'a> MakeVisitor<Writer<'a>> for Fields {
    type Visitor = FieldVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        if target.has_ansi_escapes() {
            FieldVisitor::Styled(DefaultVisitor::new(target, true))
        } else {
            FieldVisitor::Plain {
                writer: target,
                is_empty: true,
                result: Ok(()),
            }
        }
    }
}

enum FieldVisitor<'a> {
    /// Colours: the default visitor does it all.
    Styled(DefaultVisitor<'a>),
    /// No colours: plain text written here, the rest by the default
    /// visitor, one field at a time.
    Plain {
        writer: Writer<'a>,
        is_empty: bool,
        result: std::fmt::Result,
    },
}

impl FieldVisitor<'_> {
    /// One field through the default visitor, which pads it as it would
    /// have: it writes nothing after an error and for `log.*` fields (the
    /// `log` crate's metadata), and a space before anything else but the
    /// first field.
    fn by_default(&mut self, field: &Field, visit: impl FnOnce(&mut DefaultVisitor<'_>)) {
        match self {
            FieldVisitor::Styled(v) => visit(v),
            FieldVisitor::Plain {
                writer,
                is_empty,
                result,
            } => {
                if result.is_err() {
                    return;
                }
                let mut v = DefaultVisitor::new(writer.by_ref(), *is_empty);
                visit(&mut v);
                *result = v.finish();
                if !field.name().starts_with("log.") {
                    *is_empty = false;
                }
            }
        }
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if let FieldVisitor::Plain {
            writer,
            is_empty,
            result,
        } = self
            && result.is_ok()
            // `message` is written as Display, `log.*` not at all, and
            // `r#` names without it: left to the default visitor.
            && name != "message"
            && !name.starts_with("log.")
            && !name.starts_with("r#")
            && printable_ascii(value)
        {
            let pad = if *is_empty { "" } else { " " };
            *is_empty = false;
            *result = (|| {
                writer.write_str(pad)?;
                writer.write_str(name)?;
                writer.write_str("=\"")?;
                write_escaped(writer, value)?;
                writer.write_str("\"")
            })();
            return;
        }
        self.by_default(field, |v| v.record_str(field, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.by_default(field, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.by_default(field, |v| v.record_debug(field, value));
    }
}

impl VisitOutput<std::fmt::Result> for FieldVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        match self {
            FieldVisitor::Styled(v) => v.finish(),
            FieldVisitor::Plain { result, .. } => result,
        }
    }
}

impl VisitFmt for FieldVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        match self {
            FieldVisitor::Styled(v) => v.writer(),
            FieldVisitor::Plain { writer, .. } => writer,
        }
    }
}

/// Printable ASCII: text whose `Debug` [`write_escaped`] writes. Tracked
/// addresses (`bob\\40example.org@...`) are in every stanza's span, so the
/// backslash is common.
fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// What `str`'s `Debug` writes between its quotes for printable ASCII:
/// `"` and `\\` escaped with a backslash, everything else as is.
fn write_escaped(w: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    let mut rest = s;
    while let Some(at) = rest.find(['"', '\\']) {
        w.write_str(&rest[..at])?;
        w.write_char('\\')?;
        // One ASCII byte, so `at + 1` is a character boundary.
        w.write_str(&rest[at..at + 1])?;
        rest = &rest[at + 1..];
    }
    w.write_str(rest)
}

async fn serve(config: Config) -> ExitCode {
    info!(
        jid = %config.component.jid,
        server = %config.component.servers.join(", "),
        store = %store_name(&config),
        offline = ?config.presence.offline,
        "tidemark starting"
    );
    if let Some(addr) = config.metrics.listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                info!(%addr, "metrics at http://{addr}/metrics");
                tokio::spawn(component::metrics_endpoint::serve(listener));
            }
            Err(e) => {
                let message = format!("cannot listen on metrics.listen = \"{addr}\": {e}");
                error!("{message}");
                eprintln!("tidemark: {message}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("stop requested; finishing what has arrived");
        let _ = stop_tx.send(true);
        // A second signal means now.
        shutdown_signal().await;
        warn!("second stop request; exiting at once");
        std::process::exit(1);
    });
    loop {
        let store = match serving_store(&config, &mut stop).await {
            Ok(Some(store)) => store,
            Ok(None) => {
                info!("stopped");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                let message = open_failure(&config, &e);
                error!("{message}");
                eprintln!("tidemark: {message}");
                return ExitCode::from(EXIT_STORAGE);
            }
        };
        match serve_with(&config, store, stop.clone()).await {
            Err(ComponentError::Storage(lost @ StoreError::ConnectionLost(_)))
            | Err(ComponentError::Storage(lost @ StoreError::BatchLost(_))) => {
                // What the service knew beyond the store may be gone with
                // the session (and the lead with it), or with the batch the
                // store rolled back, whose answers were not sent: start over
                // from what the store holds, as a standby if another took
                // over.
                warn!(error = %lost, "starting over from what the store holds");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
            outcome => return outcome_code(outcome),
        }
    }
}

/// The store, once this tidemark is the one serving the component from it:
/// at once for sled (its directory lock allows one process); on PostgreSQL
/// after waiting as a standby while another serves, and retrying while the
/// database cannot be reached. `None`: asked to stop while waiting.
async fn serving_store(
    config: &Config,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Arc<dyn Store>>, StoreError> {
    let StorageBackend::Postgres { url, password_file } = &config.storage.backend else {
        return open_store(config).map(Some);
    };
    let options = PgOptions::new(url, password_file.as_deref())?;
    let component = config.component.jid.to_string();
    let mut standing_by = false;
    let mut retry = std::time::Duration::from_millis(500);
    loop {
        let store = match PgStore::open(&options) {
            Ok(store) => store,
            // Unreachable, or shutting down: it may be back soon.
            Err(StoreError::ConnectionLost(e)) => {
                warn!(error = %e, retry_in = ?retry, "cannot reach PostgreSQL");
                if !pause(retry, stop).await {
                    return Ok(None);
                }
                retry = (retry * 2).min(config.component.reconnect_max);
                continue;
            }
            Err(e) => return Err(e),
        };
        retry = std::time::Duration::from_millis(500);
        // The session is kept while standing by: each try is one query,
        // and the lead is taken the moment the server frees it.
        loop {
            match store.try_lead(&component) {
                Ok(true) => {
                    info!(
                        session = store.session_pid().unwrap_or_default(),
                        "serving {component} from {url}"
                    );
                    return Ok(Some(Arc::new(store)));
                }
                Ok(false) if !standing_by => {
                    info!("another tidemark serves {component} from {url}; standing by");
                    standing_by = true;
                }
                Ok(false) => {}
                Err(StoreError::ConnectionLost(e)) => {
                    warn!(error = %e, "lost PostgreSQL while standing by");
                    break;
                }
                Err(e) => return Err(e),
            }
            if !pause(STANDBY_POLL, stop).await {
                return Ok(None);
            }
        }
    }
}

/// How often a standby asks for the lead: the longest a failover waits
/// after the server has ended the serving tidemark's session.
const STANDBY_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Sleeps `d`; `false` if asked to stop meanwhile.
async fn pause(d: std::time::Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.changed() => !*stop.borrow(),
    }
}

/// One term of service over `store`: set up, connect, serve until stopped
/// or a fatal error.
async fn serve_with(
    config: &Config,
    store: Arc<dyn Store>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ComponentError> {
    let started = Tidemark::start(
        config.clone(),
        store.clone(),
        component::clock::now_millis(),
    )
    .and_then(|(tm, setup)| setup.apply(&*store).map(|_| tm));
    let mut tm = match started {
        Ok(tm) => tm,
        Err(e) => {
            error!(error = %e, "cannot set up the rooms of the config file");
            return Err(ComponentError::Storage(e));
        }
    };
    let outcome = component::run_until(config, &mut tm, stop).await;
    // Everything acknowledged was flushed already; this covers the rest.
    if let Err(e) = store.flush() {
        error!(error = %e, "final flush failed");
    }
    outcome
}

fn outcome_code(outcome: Result<(), ComponentError>) -> ExitCode {
    match outcome {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            eprintln!("tidemark: {e}");
            ExitCode::from(match e {
                ComponentError::SecretRejected { .. }
                | ComponentError::UnknownComponent { .. }
                | ComponentError::AlreadyConnected { .. } => EXIT_AUTH,
                ComponentError::NotComponentPort { .. } => EXIT_CONFIG,
                ComponentError::Storage(_) => EXIT_STORAGE,
            })
        }
    }
}

/// Where the store is, for the log.
fn store_name(config: &Config) -> String {
    match &config.storage.backend {
        StorageBackend::Sled => config.storage.path.display().to_string(),
        StorageBackend::Postgres { url, .. } => url.clone(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_written_as_debug_writes_it() {
        let debug = |s: &str| {
            let mut out = String::new();
            write_escaped(&mut out, s).unwrap();
            format!("\"{out}\"")
        };
        let mut taken = 0;
        for b in 0u8..=127 {
            let c = b as char;
            for s in [c.to_string(), format!("a{c}"), format!("{c}{c}b{c}")] {
                if printable_ascii(&s) {
                    assert_eq!(debug(&s), format!("{s:?}"), "{b}");
                    taken += 1;
                } else {
                    assert!(!(b' '..=b'~').contains(&b), "{b}");
                }
            }
        }
        assert_eq!(taken, 3 * 95, "all of printable ASCII");
        assert!(!printable_ascii("caf\u{e9}"));
        for s in [
            "bob\\40localhost@chat.localhost/b",
            "alice@localhost/phone 1",
            "\\\"'\\",
            "",
        ] {
            assert!(printable_ascii(s));
            assert_eq!(debug(s), format!("{s:?}"));
        }
    }

    /// A span and an event in it, with fields of every kind, come out of
    /// the fmt layer the same with [`Fields`] as with the default.
    #[test]
    fn the_log_reads_as_with_the_default_fields() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        fn emit() {
            for (id, from) in [
                ("m1", "alice@localhost/a"),
                ("", "bob\\40localhost@chat.localhost/b"),
                ("quote\"d", "caf\u{e9}@localhost/\u{1f600}"),
                ("tab\there", "x\ny"),
            ] {
                let span = tracing::info_span!("stanza", kind = "message", id, from, to = "");
                let _in = span.enter();
                let err = std::io::Error::other("disk gone");
                tracing::warn!(
                    error = %err,
                    source = &err as &(dyn std::error::Error + 'static),
                    count = 3,
                    flag = true,
                    text = "plain",
                    odd = "a\"b",
                    "storage failed; {} {:?}",
                    id,
                    from
                );
                tracing::info!(message = "a message field", other = "x");
                tracing::info!(log.target = "hidden", r#type = "chat", after = "log", "x");
                tracing::info!(first = 1u64, log.line = 3u64, "{}", "y");
            }
        }
        let run = |fast: bool, ansi: bool| {
            let buf = Buf::default();
            let out = buf.clone();
            let builder = tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .with_ansi(ansi)
                .without_time();
            if fast {
                tracing::subscriber::with_default(builder.fmt_fields(Fields).finish(), emit);
            } else {
                tracing::subscriber::with_default(builder.finish(), emit);
            }
            String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
        };
        for ansi in [false, true] {
            let (default, fast) = (run(false, ansi), run(true, ansi));
            assert!(default.contains("alice@localhost/a"), "{default}");
            if !ansi {
                assert!(
                    default.contains("stanza{kind=\"message\" id=\"m1\""),
                    "{default}"
                );
            }
            assert_eq!(fast, default, "ansi {ansi}");
        }
    }
}
