//! A small SMTP/LMTP next hop for the delivery tests: it records what it is
//! given and answers as the test's [`Plan`] says (4xx/5xx, per-recipient
//! replies, stalling after the dot, XCLIENT, STARTTLS with a given
//! certificate).
//!
//! Blocking std sockets and one thread per connection: the sink must be
//! obviously correct, not fast.

// Several test files include this module, each using a part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A byte stream the sink speaks over: TCP, a Unix socket, or TLS on one.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// How the sink answers.
#[derive(Default)]
pub struct Plan {
    /// RCPT replies by recipient, e.g. `"550 5.1.1 No such user"`.
    pub reject_rcpt: HashMap<String, String>,
    /// Replies after the dot, taken one per transaction (SMTP) or one per
    /// accepted recipient (LMTP); `250` once empty.
    pub dot_replies: VecDeque<String>,
    /// Read the message, then never answer (the client is killed meanwhile).
    pub stall_after_dot: bool,
    /// Offer `XCLIENT LOGIN NAME ADDR`.
    pub xclient: bool,
    /// Speak LMTP (LHLO, a reply per recipient after the dot).
    pub lmtp: bool,
    /// Offer STARTTLS with this configuration (certificate and key).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// One transaction as the sink saw it.
#[derive(Debug, Clone)]
pub struct Txn {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
    /// Recipients the sink answered 2xx after the dot.
    pub acked: Vec<String>,
    /// The transaction ran over TLS.
    pub tls: bool,
}

#[derive(Default)]
struct Shared {
    plan: Plan,
    txns: Vec<Txn>,
    xclient_lines: Vec<String>,
}

/// A running sink.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Mutex<Shared>>,
}

impl Sink {
    pub fn tcp(port: u16, plan: Plan) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("sink port is free");
        let sink = Sink {
            shared: Arc::new(Mutex::new(Shared {
                plan,
                ..Default::default()
            })),
        };
        let s = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(Box::new(stream)));
            }
        });
        sink
    }

    pub fn unix(path: &Path, plan: Plan) -> Sink {
        let listener = UnixListener::bind(path).expect("sink socket can be bound");
        let sink = Sink {
            shared: Arc::new(Mutex::new(Shared {
                plan,
                ..Default::default()
            })),
        };
        let s = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(Box::new(stream)));
            }
        });
        sink
    }

    pub fn txns(&self) -> Vec<Txn> {
        self.shared.lock().unwrap().txns.clone()
    }

    /// Transactions whose message was acknowledged for at least one recipient.
    pub fn acked(&self) -> Vec<Txn> {
        self.txns()
            .into_iter()
            .filter(|t| !t.acked.is_empty())
            .collect()
    }

    pub fn xclient_lines(&self) -> Vec<String> {
        self.shared.lock().unwrap().xclient_lines.clone()
    }

    pub fn set_stall(&self, stall: bool) {
        self.shared.lock().unwrap().plan.stall_after_dot = stall;
    }

    fn serve(&self, stream: Box<dyn Stream>) {
        let mut reader = BufReader::new(stream);
        let say = |out: &mut dyn Write, line: &str| {
            out.write_all(format!("{line}\r\n").as_bytes()).is_ok()
        };
        if !say(reader.get_mut(), "220 sink.test ESMTP") {
            return;
        }
        let mut txn: Option<Txn> = None;
        let mut in_tls = false;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            let tls = self.shared.lock().unwrap().plan.tls.clone();
            let reply: String = if upper.starts_with("EHLO") || upper.starts_with("LHLO") {
                let xclient = self.shared.lock().unwrap().plan.xclient;
                let mut r = "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n".to_string();
                if xclient {
                    r.push_str("250-XCLIENT LOGIN NAME ADDR\r\n");
                }
                if tls.is_some() && !in_tls {
                    r.push_str("250-STARTTLS\r\n");
                }
                r + "250 SIZE 100000000"
            } else if let (true, Some(config), false) = (upper == "STARTTLS", tls, in_tls) {
                if !say(reader.get_mut(), "220 2.0.0 Ready to start TLS") {
                    return;
                }
                // Anything the client sent after STARTTLS is dropped with the buffer.
                let plain = reader.into_inner();
                let server = rustls::ServerConnection::new(config).expect("a TLS session");
                reader = BufReader::new(Box::new(rustls::StreamOwned::new(server, plain)));
                (in_tls, txn) = (true, None);
                continue;
            } else if upper.starts_with("XCLIENT") {
                self.shared.lock().unwrap().xclient_lines.push(cmd.clone());
                "220 sink.test ESMTP".into()
            } else if upper.starts_with("MAIL FROM:") {
                let from = between(&cmd, '<', '>');
                txn = Some(Txn {
                    mail_from: from,
                    rcpt_to: vec![],
                    data: String::new(),
                    acked: vec![],
                    tls: in_tls,
                });
                "250 2.1.0 Ok".into()
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = between(&cmd, '<', '>');
                let reject = self
                    .shared
                    .lock()
                    .unwrap()
                    .plan
                    .reject_rcpt
                    .get(&rcpt)
                    .cloned();
                match (reject, txn.as_mut()) {
                    (Some(r), _) => r,
                    (None, Some(t)) => {
                        t.rcpt_to.push(rcpt);
                        "250 2.1.5 Ok".into()
                    }
                    (None, None) => "503 5.5.1 MAIL first".into(),
                }
            } else if upper == "DATA" {
                let Some(mut t) = txn.take().filter(|t| !t.rcpt_to.is_empty()) else {
                    if !say(reader.get_mut(), "554 5.5.1 No valid recipients") {
                        return;
                    }
                    continue;
                };
                if !say(reader.get_mut(), "354 go ahead") {
                    return;
                }
                t.data = read_data(&mut reader);
                let (stall, lmtp) = {
                    let s = self.shared.lock().unwrap();
                    (s.plan.stall_after_dot, s.plan.lmtp)
                };
                if stall {
                    self.shared.lock().unwrap().txns.push(t);
                    std::thread::sleep(Duration::from_secs(3600));
                    return;
                }
                let n = if lmtp { t.rcpt_to.len() } else { 1 };
                let mut replies = Vec::new();
                for i in 0..n {
                    let r = self.shared.lock().unwrap().plan.dot_replies.pop_front();
                    let r = r.unwrap_or_else(|| "250 2.0.0 Ok: queued".into());
                    if r.starts_with('2') {
                        if lmtp {
                            t.acked.push(t.rcpt_to[i].clone());
                        } else {
                            t.acked = t.rcpt_to.clone();
                        }
                    }
                    replies.push(r);
                }
                self.shared.lock().unwrap().txns.push(t);
                replies.join("\r\n")
            } else if upper == "RSET" {
                txn = None;
                "250 2.0.0 Ok".into()
            } else if upper == "NOOP" {
                "250 2.0.0 Ok".into()
            } else if upper == "QUIT" {
                let _ = say(reader.get_mut(), "221 2.0.0 Bye");
                return;
            } else {
                "500 5.5.2 What?".into()
            };
            if !say(reader.get_mut(), &reply) {
                return;
            }
        }
    }
}

fn between(s: &str, open: char, close: char) -> String {
    let start = s.find(open).map(|i| i + 1).unwrap_or(0);
    let end = s[start..].find(close).map(|i| start + i).unwrap_or(s.len());
    s[start..end].to_string()
}

/// Reads a DATA body up to the lone dot, undoing dot-stuffing.
fn read_data(reader: &mut impl BufRead) -> String {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
            return data;
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}
