//! The floor of one-session submission on this machine: the least a durable server
//! can do for each message with the benchmark's client, measured so that a ratio to
//! Postfix can be read against what any server could reach.
//!
//! It speaks just enough SMTP for lettre (EHLO, STARTTLS with the same rustls
//! configuration as portcullis, AUTH PLAIN accepted unchecked, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT), reads the body, writes it with one `pwrite` into a file
//! allocated beforehand and `fdatasync`s it, on the thread that read it, before
//! answering `250`. Then it relays the body to the benchmark's `smtp-sink`, as both
//! servers do: over one connection kept open, MAIL, RCPT and DATA pipelined, the body
//! dot-stuffed, while the session goes on. It checks nothing, parses no header and
//! keeps no queue: every server that makes a message durable before `250` and relays
//! it does at least this. It runs in its own process (the bench binary started again
//! with `COMPARE_BENCH_FLOOR` set), so its CPU is measured the way the servers' is.
//!
//! Started with [`Storage::Queue`] it keeps the same SMTP and relaying but makes each
//! body durable as portcullis does, in its store's queue (one message committed on
//! the session's thread and flushed before `250`, recorded delivered after the
//! relay): the least a server with that queue can do. Between the two floors lies
//! what the queue costs; between the second and portcullis, everything else.

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufStream,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Names `port dir sink_port storage` for the child process.
pub const ENV: &str = "COMPARE_BENCH_FLOOR";

/// Where the floor makes a body durable before its `250`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// One `pwrite` into a file allocated beforehand, and `fdatasync`.
    File,
    /// A message in portcullis' queue (`store` on SQLite).
    Queue,
}

impl Storage {
    /// The server's name in the bench's cells, in its command line, and of its
    /// threads (which `bench/phases.sh` tells the floors apart by).
    pub const fn name(self) -> &'static str {
        match self {
            Storage::File => "floor",
            Storage::Queue => "floor+queue",
        }
    }

    pub fn parse(s: &str) -> Option<Storage> {
        [Storage::File, Storage::Queue]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// The queue floor's lease on the messages it accepts, which it delivers itself.
const OWNER: &str = "floor";

/// The spool: bodies are written round it, each over space already on disk, so a
/// flush writes data only and never the file's size (the cheapest durable write).
const SPOOL_BYTES: u64 = 64 << 20;

/// Serves on `127.0.0.1:port` until killed, relaying to the sink on
/// `127.0.0.1:sink_port`; `dir` holds the spool (or the store) and the certificate.
pub fn serve(port: u16, dir: &Path, sink_port: u16, storage: Storage) -> ! {
    let mut config = config::Config::default();
    config.store.data_dir = dir.to_path_buf();
    config.submission.hostname = "bench.portcullis.test".into();
    let tls = submission::tls::TlsSource::load(&config).expect("floor certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(storage.name())
        .enable_all()
        .build()
        .expect("floor runtime");
    let keeper = Arc::new(match storage {
        Storage::File => Keeper::File(Spool::create(dir)),
        Storage::Queue => {
            let url = format!("sqlite://{}", dir.join("floor.db").display());
            Keeper::Queue(
                runtime
                    .block_on(store::Store::open(&url))
                    .expect("floor store"),
            )
        }
    });
    runtime.block_on(async move {
        let (relayed, bodies) = mpsc::unbounded_channel();
        let delivered = keeper.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(sink_port, bodies, &delivered).await {
                // A panic would end only this task: the bench would wait for the sink.
                eprintln!("floor: relaying to the sink failed: {e}");
                std::process::exit(1);
            }
        });
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("floor listens");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, keeper, relayed) = (acceptor.clone(), keeper.clone(), relayed.clone());
            tokio::spawn(async move {
                let _ = session(tcp, acceptor, keeper, relayed).await;
            });
        }
    })
}

/// What makes bodies durable (see [`Storage`]).
enum Keeper {
    File(Spool),
    Queue(store::Store),
}

/// A body on its way to the sink, and its queued message to record delivered.
struct Relayed {
    body: Arc<Vec<u8>>,
    queued: Option<(String, i64)>,
}

impl Keeper {
    /// Makes `body` durable, blocking this thread for the flush (one session:
    /// nothing else waits).
    async fn keep(&self, body: Vec<u8>) -> std::io::Result<Relayed> {
        match self {
            Keeper::File(spool) => {
                spool.store(&body)?;
                Ok(Relayed {
                    body: Arc::new(body),
                    queued: None,
                })
            }
            Keeper::Queue(store) => enqueue(store, body).await,
        }
    }

    /// Records a relayed message delivered, as delivery does (not flushed: a power
    /// cut may have it relayed again).
    async fn delivered(&self, queued: Option<(String, i64)>) -> std::io::Result<()> {
        let (Keeper::Queue(store), Some((id, recipient))) = (self, queued) else {
            return Ok(());
        };
        let outcome = store::RecipientOutcome {
            recipient_id: recipient,
            address: "sink@portcullis.test".into(),
            status: store::RecipientStatus::Delivered,
            next_attempt: policy::Timestamp(0),
            reply: "250 2.0.0 ok".into(),
            host: None,
            tls: None,
            attempted: true,
            delay_warned: false,
        };
        store
            .record_outcomes(OWNER, &id, &[outcome])
            .await
            .map_err(std::io::Error::other)
    }
}

/// One message committed alone into the queue and flushed, as portcullis commits a
/// message when no other is being committed.
async fn enqueue(store: &store::Store, body: Vec<u8>) -> std::io::Result<Relayed> {
    let message = store::NewQueuedMessage {
        id: store::new_queue_id(),
        login: "floor".into(),
        mail_from: "floor@portcullis.test".into(),
        recipients: vec![store::NewQueuedRecipient {
            address: "sink@portcullis.test".into(),
            ..Default::default()
        }],
        body: Arc::new(body),
        claim: Some(store::Claim {
            owner: OWNER.into(),
            until: policy::Timestamp(i64::MAX / 2),
        }),
        ..Default::default()
    };
    let (claimed, unflushed) = store
        .enqueue_on_caller(&message)
        .await
        .map_err(std::io::Error::other)?;
    unflushed.flushed_here().map_err(std::io::Error::other)?;
    let recipient = claimed.and_then(|m| m.recipients.first().map(|r| r.id));
    Ok(Relayed {
        body: message.body,
        queued: recipient.map(|r| (message.id, r)),
    })
}

struct Spool {
    file: std::fs::File,
    next: std::sync::Mutex<u64>,
}

impl Spool {
    /// The spool file in `dir`, filled with zeros and flushed.
    fn create(dir: &Path) -> Spool {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("floor.spool"))
            .expect("floor spool");
        let zeros = vec![0u8; 1 << 20];
        for i in 0..SPOOL_BYTES / zeros.len() as u64 {
            file.write_all_at(&zeros, i * zeros.len() as u64)
                .expect("fill floor spool");
        }
        file.sync_all().expect("sync floor spool");
        Spool {
            file,
            next: std::sync::Mutex::new(0),
        }
    }

    /// Writes `body` and flushes it, blocking this thread.
    fn store(&self, body: &[u8]) -> std::io::Result<()> {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            if *next + body.len() as u64 > SPOOL_BYTES {
                *next = 0;
            }
            let at = *next;
            *next += body.len() as u64;
            at
        };
        self.file.write_all_at(body, at)?;
        self.file.sync_data()
    }
}

/// The verb of a command line, upper-cased.
fn verb(line: &[u8]) -> String {
    let end = line
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(line.len());
    String::from_utf8_lossy(&line[..end]).to_ascii_uppercase()
}

/// The verb of the next command line (left in `line`), or None at the end of input.
async fn next_verb<S: AsyncBufRead + Unpin>(
    s: &mut S,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    line.clear();
    if s.read_until(b'\n', line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(verb(line)))
}

async fn reply<S: AsyncWrite + Unpin>(s: &mut S, text: &[u8]) -> std::io::Result<()> {
    s.write_all(text).await?;
    s.flush().await
}

/// Bodies accepted and flushed, on their way to the sink.
type ToSink = mpsc::UnboundedSender<Relayed>;

async fn session(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    keeper: Arc<Keeper>,
    relayed: ToSink,
) -> std::io::Result<()> {
    let mut s = BufStream::new(tcp);
    reply(&mut s, b"220 floor ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        let Some(command) = next_verb(&mut s, &mut line).await? else {
            return Ok(());
        };
        match command.as_str() {
            "EHLO" => reply(&mut s, b"250-floor\r\n250-8BITMIME\r\n250 STARTTLS\r\n").await?,
            "STARTTLS" => {
                reply(&mut s, b"220 2.0.0 ready\r\n").await?;
                let tls = acceptor.accept(s.into_inner()).await?;
                let tls = BufStream::with_capacity(64 << 10, 8 << 10, tls);
                return transactions(tls, &keeper, &relayed).await;
            }
            "QUIT" => return reply(&mut s, b"221 2.0.0 bye\r\n").await,
            _ => reply(&mut s, b"530 5.7.0 STARTTLS first\r\n").await?,
        }
    }
}

async fn transactions<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: BufStream<S>,
    keeper: &Keeper,
    relayed: &ToSink,
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut body = Vec::new();
    loop {
        let Some(command) = next_verb(&mut s, &mut line).await? else {
            return Ok(());
        };
        match command.as_str() {
            "EHLO" => reply(&mut s, b"250-floor\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n").await?,
            "AUTH" => reply(&mut s, b"235 2.7.0 ok\r\n").await?,
            "MAIL" | "RCPT" | "RSET" | "NOOP" => reply(&mut s, b"250 2.0.0 ok\r\n").await?,
            "DATA" => {
                reply(&mut s, b"354 go ahead\r\n").await?;
                body.clear();
                loop {
                    line.clear();
                    if s.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    let unstuffed = if line.starts_with(b".") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    body.extend_from_slice(unstuffed);
                }
                let kept = keeper.keep(std::mem::take(&mut body)).await?;
                reply(&mut s, b"250 2.0.0 stored\r\n").await?;
                let _ = relayed.send(kept);
            }
            "QUIT" => return reply(&mut s, b"221 2.0.0 bye\r\n").await,
            _ => reply(&mut s, b"500 5.5.2 unknown command\r\n").await?,
        }
    }
}

/// Sends every body to the sink, in order, over one connection.
async fn relay(
    port: u16,
    mut bodies: mpsc::UnboundedReceiver<Relayed>,
    keeper: &Keeper,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let mut s = BufStream::with_capacity(8 << 10, 64 << 10, tcp);
    let mut line = Vec::new();
    sink_reply(&mut s, &mut line, b'2').await?;
    reply(&mut s, b"EHLO floor\r\n").await?;
    sink_reply(&mut s, &mut line, b'2').await?;
    while let Some(Relayed { body, queued }) = bodies.recv().await {
        reply(
            &mut s,
            b"MAIL FROM:<floor@portcullis.test>\r\nRCPT TO:<sink@portcullis.test>\r\nDATA\r\n",
        )
        .await?;
        sink_reply(&mut s, &mut line, b'2').await?;
        sink_reply(&mut s, &mut line, b'2').await?;
        sink_reply(&mut s, &mut line, b'3').await?;
        for text in body.split_inclusive(|&b| b == b'\n') {
            if text.starts_with(b".") {
                s.write_all(b".").await?;
            }
            s.write_all(text).await?;
        }
        reply(&mut s, b".\r\n").await?;
        sink_reply(&mut s, &mut line, b'2').await?;
        keeper.delivered(queued).await?;
    }
    Ok(())
}

/// Reads one (multi-line) reply of the sink; an error unless it starts with `class`.
async fn sink_reply<S: AsyncBufRead + Unpin>(
    s: &mut S,
    line: &mut Vec<u8>,
    class: u8,
) -> std::io::Result<()> {
    loop {
        line.clear();
        if s.read_until(b'\n', line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.first() != Some(&class) {
            let text = String::from_utf8_lossy(line).trim_end().to_string();
            return Err(std::io::Error::other(format!("the sink replied {text}")));
        }
        if line.get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}
