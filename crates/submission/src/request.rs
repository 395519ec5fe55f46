//! SMTP command parsing: one command line (without its line ending) in, a typed
//! [`Command`] or a [`RequestError`] that knows its reply out. No I/O, no session
//! state: sequencing rules live in `session`.

use crate::response::{self, Enhanced, Reply};

/// Longest address we accept (RFC 5321 section 4.5.3.1.3: a path is at most 256 octets).
const MAX_PATH: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    /// RFC 3030 CHUNKING: `size` octets follow the command line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    StartTls,
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
    Vrfy,
    Expn,
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

/// The BODY parameter (RFC 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// The RET parameter (RFC 3461).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

impl Ret {
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Headers => "HDRS",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailFrom {
    /// Empty for the null reverse-path `<>`.
    pub address: String,
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// ENVID, still xtext-encoded as received.
    pub envid: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptTo {
    pub address: String,
    /// NOTIFY as received, upper-cased: `NEVER` or a comma list of SUCCESS, FAILURE, DELAY.
    pub notify: Option<String>,
    /// ORCPT as received: `addr-type;xtext`.
    pub orcpt: Option<String>,
}

/// Why a command line was refused; each maps to one reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The verb is not one we know.
    #[error("command not recognized")]
    Unknown,
    /// A verb we know but do not offer (EXPN, TURN, ...).
    #[error("command not implemented")]
    NotImplemented,
    /// The line is not UTF-8 or otherwise malformed.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// The MAIL FROM path is malformed.
    #[error("bad sender address syntax")]
    BadSender,
    /// The RCPT TO path is malformed.
    #[error("bad recipient address syntax")]
    BadRecipient,
    /// A parameter we do not support or with a bad value.
    #[error("unsupported parameter {0}")]
    Parameter(String),
    #[error("unsupported authentication mechanism")]
    Mechanism,
}

impl RequestError {
    pub fn reply(&self) -> Reply {
        match self {
            RequestError::Unknown => response::unknown_command(),
            RequestError::NotImplemented => response::not_implemented(),
            RequestError::Syntax(usage) => {
                Reply::new(501, Enhanced(5, 5, 4), format!("Syntax: {usage}"))
            }
            RequestError::BadSender => {
                Reply::new(501, Enhanced(5, 1, 7), "Bad sender address syntax")
            }
            RequestError::BadRecipient => {
                Reply::new(501, Enhanced(5, 1, 3), "Bad recipient address syntax")
            }
            RequestError::Parameter(p) => {
                Reply::new(555, Enhanced(5, 5, 4), format!("Unsupported option: {p}"))
            }
            RequestError::Mechanism => response::auth_mechanism(),
        }
    }
}

/// Parses one command line, without CRLF.
pub fn parse(line: &[u8]) -> Result<Command, RequestError> {
    let line = std::str::from_utf8(line)
        .map_err(|_| RequestError::Syntax("commands are ASCII (or UTF-8 with SMTPUTF8)"))?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                return Err(RequestError::Syntax(if verb == "EHLO" {
                    "EHLO hostname"
                } else {
                    "HELO hostname"
                }));
            }
            if verb == "EHLO" {
                Ok(Command::Ehlo(name.to_string()))
            } else {
                Ok(Command::Helo(name.to_string()))
            }
        }
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(rest, Command::Data, "DATA"),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(rest, Command::Rset, "RSET"),
        // NOOP may carry an argument that is ignored (RFC 5321 section 4.1.1.9).
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(rest, Command::Quit, "QUIT"),
        "STARTTLS" => no_args(rest, Command::StartTls, "STARTTLS"),
        "AUTH" => parse_auth(rest),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "TURN" | "ETRN" | "ATRN" | "SEND" | "SOML" | "SAML" | "VERB" => {
            Err(RequestError::NotImplemented)
        }
        _ => Err(RequestError::Unknown),
    }
}

fn no_args(rest: &str, cmd: Command, usage: &'static str) -> Result<Command, RequestError> {
    if rest.is_empty() {
        Ok(cmd)
    } else {
        Err(RequestError::Syntax(usage))
    }
}

/// Splits `FROM:<path> params` after the keyword; tolerates a space after the colon.
fn split_path<'a>(rest: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let after = rest[keyword.len()..].trim_start();
    let body = after.strip_prefix('<')?;
    // Find the closing '>' outside a quoted local part.
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let params = &body[i + 1..];
                if !params.is_empty() && !params.starts_with(' ') {
                    return None;
                }
                return Some((&body[..i], params.trim()));
            }
            _ => {}
        }
    }
    None
}

/// Validates a mailbox (or empty) and strips an obsolete source route.
fn mailbox(path: &str, allow_empty: bool) -> Option<String> {
    // "@a,@b:user@domain": the route is ignored (RFC 5321 section 4.1.2).
    let path = match (path.starts_with('@'), path.find(':')) {
        (true, Some(i)) => &path[i + 1..],
        _ => path,
    };
    if path.is_empty() {
        return allow_empty.then(String::new);
    }
    if path.len() > MAX_PATH
        || path
            .chars()
            .any(|c| c.is_control() || c == ' ' && !path.starts_with('"'))
    {
        return None;
    }
    let (local, domain) = path.rsplit_once('@')?;
    let domain_ok = !domain.is_empty()
        && (domain.starts_with('[') && domain.ends_with(']')
            || domain.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_alphanumeric() || c == '-' || !c.is_ascii())
            }));
    if local.is_empty() || !domain_ok {
        return None;
    }
    Some(path.to_string())
}

/// `KEY=VALUE` or `KEY` parameters, keys upper-cased; a repeated key is an error.
fn params(text: &str) -> Result<Vec<(String, Option<&str>)>, RequestError> {
    let mut out: Vec<(String, Option<&str>)> = Vec::new();
    for p in text.split_whitespace() {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (p.to_ascii_uppercase(), None),
        };
        if k.is_empty() || out.iter().any(|(seen, _)| *seen == k) {
            return Err(RequestError::Parameter(p.to_string()));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// xtext (RFC 3461 section 4): printable ASCII except '+' and '=', or `+XX`.
fn valid_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                if i + 2 >= b.len() {
                    return false;
                }
                if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                    return false;
                }
                i += 3;
            }
            33..=126 if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    !s.is_empty() && s.len() <= 100
}

fn parse_mail(rest: &str) -> Result<Command, RequestError> {
    const USAGE: &str = "MAIL FROM:<address>";
    let (path, ptext) = split_path(rest, "FROM:").ok_or(RequestError::Syntax(USAGE))?;
    let address = mailbox(path, true).ok_or(RequestError::BadSender)?;
    let mut m = MailFrom {
        address,
        ..MailFrom::default()
    };
    for (k, v) in params(ptext)? {
        let bad = || {
            RequestError::Parameter(format!(
                "{k}{}",
                v.map(|v| format!("={v}")).unwrap_or_default()
            ))
        };
        match (k.as_str(), v) {
            ("SIZE", Some(v))
                if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) =>
            {
                m.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {
                m.body = Some(BodyType::SevenBit)
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                m.body = Some(BodyType::EightBitMime)
            }
            ("SMTPUTF8", None) => m.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => m.ret = Some(Ret::Full),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => m.ret = Some(Ret::Headers),
            ("ENVID", Some(v)) if valid_xtext(v) => m.envid = Some(v.to_string()),
            // AUTH=<mailbox> (RFC 4954 section 5): accepted and ignored; we know who logged in.
            ("AUTH", Some(_)) => {}
            _ => return Err(bad()),
        }
    }
    Ok(Command::Mail(m))
}

fn parse_rcpt(rest: &str) -> Result<Command, RequestError> {
    const USAGE: &str = "RCPT TO:<address>";
    let (path, ptext) = split_path(rest, "TO:").ok_or(RequestError::Syntax(USAGE))?;
    let address = if path.eq_ignore_ascii_case("postmaster") {
        "postmaster".to_string()
    } else {
        mailbox(path, false).ok_or(RequestError::BadRecipient)?
    };
    let mut r = RcptTo {
        address,
        ..RcptTo::default()
    };
    for (k, v) in params(ptext)? {
        let bad = || {
            RequestError::Parameter(format!(
                "{k}{}",
                v.map(|v| format!("={v}")).unwrap_or_default()
            ))
        };
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) => {
                let v = v.to_ascii_uppercase();
                let items: Vec<&str> = v.split(',').collect();
                let ok = if items.contains(&"NEVER") {
                    items.len() == 1
                } else {
                    items
                        .iter()
                        .all(|i| matches!(*i, "SUCCESS" | "FAILURE" | "DELAY"))
                };
                if !ok {
                    return Err(bad());
                }
                r.notify = Some(v);
            }
            ("ORCPT", Some(v)) => match v.split_once(';') {
                Some((t, a))
                    if !t.is_empty()
                        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && valid_xtext(a) =>
                {
                    r.orcpt = Some(v.to_string())
                }
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        }
    }
    Ok(Command::Rcpt(r))
}

fn parse_bdat(rest: &str) -> Result<Command, RequestError> {
    const USAGE: &str = "BDAT size [LAST]";
    let mut words = rest.split_whitespace();
    let size = words
        .next()
        .filter(|w| !w.is_empty() && w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or(RequestError::Syntax(USAGE))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(RequestError::Syntax(USAGE)),
    };
    if words.next().is_some() {
        return Err(RequestError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, RequestError> {
    let mut words = rest.split_whitespace();
    let mechanism = match words.next().map(str::to_ascii_uppercase).as_deref() {
        Some("PLAIN") => Mechanism::Plain,
        Some("LOGIN") => Mechanism::Login,
        Some(_) => return Err(RequestError::Mechanism),
        None => return Err(RequestError::Syntax("AUTH mechanism [initial-response]")),
    };
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(RequestError::Syntax("AUTH mechanism [initial-response]"));
    }
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, RequestError> {
        parse(s.as_bytes())
    }

    #[test]
    fn greetings_and_simple_verbs() {
        assert_eq!(
            p("EHLO client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(p("helo x"), Ok(Command::Helo("x".into())));
        assert_eq!(p("EHLO"), Err(RequestError::Syntax("EHLO hostname")));
        assert_eq!(p("data"), Ok(Command::Data));
        assert_eq!(p("RSET"), Ok(Command::Rset));
        assert_eq!(p("NOOP whatever"), Ok(Command::Noop));
        assert_eq!(p("QUIT"), Ok(Command::Quit));
        assert_eq!(p("STARTTLS"), Ok(Command::StartTls));
        assert_eq!(p("STARTTLS now"), Err(RequestError::Syntax("STARTTLS")));
        assert_eq!(p("VRFY root"), Ok(Command::Vrfy));
        assert_eq!(p("EXPN list"), Ok(Command::Expn));
        assert_eq!(p("FOO"), Err(RequestError::Unknown));
        assert_eq!(p("ETRN x"), Err(RequestError::NotImplemented));
        assert!(matches!(parse(b"EHLO \xff"), Err(RequestError::Syntax(_))));
    }

    #[test]
    fn mail_from_with_parameters() {
        let Ok(Command::Mail(m)) =
            p("MAIL FROM:<ann@example.net> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2B1 AUTH=<>")
        else {
            panic!()
        };
        assert_eq!(m.address, "ann@example.net");
        assert_eq!(m.size, Some(1000));
        assert_eq!(m.body, Some(BodyType::EightBitMime));
        assert!(m.smtputf8);
        assert_eq!(m.ret, Some(Ret::Headers));
        assert_eq!(m.envid.as_deref(), Some("abc+2B1"));
        let Ok(Command::Mail(m)) = p("mail from: <>") else {
            panic!()
        };
        assert_eq!(m.address, "");
        let Ok(Command::Mail(m)) = p("MAIL FROM:<@relay.example:bob@example.org>") else {
            panic!()
        };
        assert_eq!(m.address, "bob@example.org");
        let Ok(Command::Mail(m)) = p("MAIL FROM:<\"odd>name\"@example.org>") else {
            panic!()
        };
        assert_eq!(m.address, "\"odd>name\"@example.org");
    }

    #[test]
    fn mail_from_errors() {
        assert_eq!(
            p("MAIL ann@example.net"),
            Err(RequestError::Syntax("MAIL FROM:<address>"))
        );
        assert_eq!(
            p("MAIL FROM:<ann@example.net"),
            Err(RequestError::Syntax("MAIL FROM:<address>"))
        );
        assert_eq!(p("MAIL FROM:<no-domain>"), Err(RequestError::BadSender));
        assert_eq!(p("MAIL FROM:<a@b..c>"), Err(RequestError::BadSender));
        assert_eq!(
            p("MAIL FROM:<a@b> SIZE=x"),
            Err(RequestError::Parameter("SIZE=x".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b> BODY=BINARYMIME"),
            Err(RequestError::Parameter("BODY=BINARYMIME".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b> FOO"),
            Err(RequestError::Parameter("FOO".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b> SIZE=1 SIZE=2"),
            Err(RequestError::Parameter("SIZE=2".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b> ENVID=a=b"),
            Err(RequestError::Parameter("ENVID=a=b".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b>x"),
            Err(RequestError::Syntax("MAIL FROM:<address>"))
        );
        let long = format!("MAIL FROM:<{}@example.org>", "a".repeat(300));
        assert_eq!(p(&long), Err(RequestError::BadSender));
        assert_eq!(
            p("MAIL FROM:<a@b> SIZE=99999999999999999999").map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn rcpt_to_with_dsn_parameters() {
        let Ok(Command::Rcpt(r)) =
            p("RCPT TO:<bob@example.org> NOTIFY=success,failure ORCPT=rfc822;bob@example.org")
        else {
            panic!()
        };
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;bob@example.org"));
        assert!(p("RCPT TO:<b@x> NOTIFY=NEVER").is_ok());
        assert!(p("RCPT TO:<b@x> NOTIFY=NEVER,SUCCESS").is_err());
        assert!(p("RCPT TO:<b@x> NOTIFY=SOMETIMES").is_err());
        assert!(p("RCPT TO:<b@x> ORCPT=bob").is_err());
        assert_eq!(p("RCPT TO:<>"), Err(RequestError::BadRecipient));
        assert!(
            matches!(p("RCPT TO:<Postmaster>"), Ok(Command::Rcpt(r)) if r.address == "postmaster")
        );
        assert!(matches!(
            p("RCPT TO:<josé@exämple.org>"),
            Ok(Command::Rcpt(_))
        ));
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(
            p("BDAT 100"),
            Ok(Command::Bdat {
                size: 100,
                last: false
            })
        );
        assert_eq!(
            p("BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert!(p("BDAT").is_err());
        assert!(p("BDAT -1").is_err());
        assert!(p("BDAT 1 FIRST").is_err());
        assert_eq!(
            p("AUTH PLAIN AGFubgBwdw=="),
            Ok(Command::Auth {
                mechanism: Mechanism::Plain,
                initial: Some("AGFubgBwdw==".into())
            })
        );
        assert_eq!(
            p("auth login"),
            Ok(Command::Auth {
                mechanism: Mechanism::Login,
                initial: None
            })
        );
        assert_eq!(p("AUTH CRAM-MD5"), Err(RequestError::Mechanism));
        assert_eq!(RequestError::Mechanism.reply().code, 504);
    }

    #[test]
    fn xtext() {
        assert!(valid_xtext("abc+2B"));
        assert!(!valid_xtext("abc+2"));
        assert!(!valid_xtext("abc+"));
        assert!(!valid_xtext("a b"));
        assert!(!valid_xtext(""));
    }
}
