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

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufStream,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Names `port dir sink_port` for the child process.
pub const ENV: &str = "COMPARE_BENCH_FLOOR";

/// The spool: bodies are written round it, each over space already on disk, so a
/// flush writes data only and never the file's size (the cheapest durable write).
const SPOOL_BYTES: u64 = 64 << 20;

/// Serves on `127.0.0.1:port` until killed, relaying to the sink on
/// `127.0.0.1:sink_port`; `dir` holds the spool and the certificate.
pub fn serve(port: u16, dir: &Path, sink_port: u16) -> ! {
    let spool = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("floor.spool"))
        .expect("floor spool");
    let zeros = vec![0u8; 1 << 20];
    for i in 0..SPOOL_BYTES / zeros.len() as u64 {
        spool
            .write_all_at(&zeros, i * zeros.len() as u64)
            .expect("fill floor spool");
    }
    spool.sync_all().expect("sync floor spool");
    let mut config = config::Config::default();
    config.store.data_dir = dir.to_path_buf();
    config.submission.hostname = "bench.portcullis.test".into();
    let tls = submission::tls::TlsSource::load(&config).expect("floor certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let spool = Arc::new(Spool {
        file: spool,
        next: std::sync::Mutex::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("floor runtime");
    runtime.block_on(async move {
        let (relayed, bodies) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            if let Err(e) = relay(sink_port, bodies).await {
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
            let (acceptor, spool, relayed) = (acceptor.clone(), spool.clone(), relayed.clone());
            tokio::spawn(async move {
                let _ = session(tcp, acceptor, spool, relayed).await;
            });
        }
    })
}

struct Spool {
    file: std::fs::File,
    next: std::sync::Mutex<u64>,
}

impl Spool {
    /// Writes `body` and flushes it, blocking this thread (one session: nothing waits).
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
type Relayed = mpsc::UnboundedSender<Vec<u8>>;

async fn session(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    spool: Arc<Spool>,
    relayed: Relayed,
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
                return transactions(tls, &spool, &relayed).await;
            }
            "QUIT" => return reply(&mut s, b"221 2.0.0 bye\r\n").await,
            _ => reply(&mut s, b"530 5.7.0 STARTTLS first\r\n").await?,
        }
    }
}

async fn transactions<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: BufStream<S>,
    spool: &Spool,
    relayed: &Relayed,
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
                spool.store(&body)?;
                reply(&mut s, b"250 2.0.0 stored\r\n").await?;
                let _ = relayed.send(std::mem::take(&mut body));
            }
            "QUIT" => return reply(&mut s, b"221 2.0.0 bye\r\n").await,
            _ => reply(&mut s, b"500 5.5.2 unknown command\r\n").await?,
        }
    }
}

/// Sends every body to the sink, in order, over one connection.
async fn relay(port: u16, mut bodies: mpsc::UnboundedReceiver<Vec<u8>>) -> std::io::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let mut s = BufStream::with_capacity(8 << 10, 64 << 10, tcp);
    let mut line = Vec::new();
    sink_reply(&mut s, &mut line, b'2').await?;
    reply(&mut s, b"EHLO floor\r\n").await?;
    sink_reply(&mut s, &mut line, b'2').await?;
    while let Some(body) = bodies.recv().await {
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
