//! Behaviour of the spool on a real (temporary) filesystem.

use super::*;

fn meta() -> MessageMeta {
    MessageMeta {
        received_at: "2024-05-01T12:00:00Z".into(),
        mail_from: "alice@example.org".into(),
        rcpt_to: vec!["bob@example.net".into(), "carol@example.net".into()],
        body: "8bitmime".into(),
        declared_size: Some(1234),
        helo: Some("client.example.org".into()),
        client_addr: "192.0.2.1:50000".into(),
        server_addr: "198.51.100.2:587".into(),
        listener: "submission".into(),
        tls: Some(TlsMeta {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            client_certificate: None,
        }),
        auth: Some(AuthMeta {
            authn_id: "alice".into(),
            authz_id: "alice".into(),
            mechanism: "PLAIN".into(),
            user_data: None,
            credential: Some(CredentialMeta {
                id: "k3x9q2m7a4b5".into(),
                label: "phone".into(),
            }),
        }),
        mail_auth_param: Some("<>".into()),
        xclient: None,
        meta: Default::default(),
        held: None,
        smtputf8: false,
        dsn: None,
    }
}

const MESSAGE: &[u8] = b"Received: from client\r\nSubject: hi\r\n\r\nbody\r\n";

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn store_then_list_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool.store(&meta(), MESSAGE).unwrap();

    assert_eq!(spool.list().unwrap(), vec![id.clone()]);
    let (stored, bytes) = spool.read(&id).unwrap();
    assert_eq!(bytes, MESSAGE);
    assert_eq!(stored.id, id.to_string());
    assert_eq!(stored.size, MESSAGE.len() as u64);
    assert_eq!(stored.meta, meta());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert!(names(&spool.queue_dir()).is_empty());
    assert_eq!(names(&dir.path().join("journal")), ["0000000000000001.log"]);
}

/// SMTPUTF8 and the DSN requests are kept; metadata written before they
/// existed still reads (both absent: no SMTPUTF8, no DSN request).
#[test]
fn smtputf8_and_dsn_round_trip_and_default_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let m = MessageMeta {
        mail_from: "j\u{fc}rgen@b\u{fc}cher.example".into(),
        smtputf8: true,
        dsn: Some(DsnMeta {
            ret: Some("HDRS".into()),
            envid: Some("x".into()),
            recipients: vec![RcptDsnMeta {
                rcpt: "bob@example.net".into(),
                notify: Some("SUCCESS,FAILURE".into()),
                orcpt: Some("rfc822;bob@example.net".into()),
            }],
        }),
        ..meta()
    };
    let id = spool.store(&m, MESSAGE).unwrap();
    assert_eq!(spool.read(&id).unwrap().0.meta, m);
    let mut json = serde_json::to_value(meta()).unwrap();
    assert!(json.get("smtputf8").is_none() && json.get("dsn").is_none());
    json.as_object_mut().unwrap().remove("meta");
    let old: MessageMeta = serde_json::from_value(json).unwrap();
    assert_eq!((old.smtputf8, old.dsn), (false, None));
}

#[test]
fn null_sender_and_absent_options_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let m = MessageMeta {
        mail_from: String::new(),
        declared_size: None,
        helo: None,
        tls: None,
        auth: None,
        mail_auth_param: None,
        ..meta()
    };
    let id = spool.store(&m, b"").unwrap();
    let (stored, bytes) = spool.read(&id).unwrap();
    assert_eq!(stored.meta, m);
    assert_eq!(stored.size, 0);
    assert!(bytes.is_empty());
}

#[test]
fn stores_list_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let ids: Vec<MessageId> = (0..20)
        .map(|i| spool.store(&meta(), format!("msg {i}").as_bytes()).unwrap())
        .collect();
    assert_eq!(spool.list().unwrap(), ids);
    let (_, first) = spool.read(&ids[0]).unwrap();
    assert_eq!(first, b"msg 0");
}

#[test]
fn a_reopened_spool_has_exactly_the_live_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, removed) = {
        let spool = Spool::open(dir.path()).unwrap();
        let a = spool.store(&meta(), b"a").unwrap();
        let b = spool.store(&meta(), b"b").unwrap();
        let c = spool.store(&meta(), b"c").unwrap();
        spool.remove(&b).unwrap();
        (vec![a, c], b)
    };
    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.list().unwrap(), kept);
    assert_eq!(spool.read(&kept[1]).unwrap().1, b"c");
    assert!(matches!(spool.read(&removed), Err(SpoolError::NotFound(_))));
    // New messages go to a new segment and survive the next restart too.
    let d = spool.store(&meta(), b"d").unwrap();
    drop(spool);
    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.list().unwrap().last(), Some(&d));
}

#[test]
fn a_torn_tail_loses_only_the_unacknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let spool = Spool::open(dir.path()).unwrap();
        spool.store(&meta(), MESSAGE).unwrap()
    };
    let segment = dir.path().join("journal/0000000000000001.log");
    let whole = fs::read(&segment).unwrap();
    // A second append that a crash cut short, at every possible length.
    let mut frame = Vec::new();
    let id = "00062f1c3a9b2e10-00000002";
    journal::encode(
        &Record::Message {
            id,
            json: b"{}",
            message: b"never acknowledged",
        },
        &mut frame,
    );
    for cut in [1, 7, 8, 20, frame.len() - 1] {
        let mut torn = whole.clone();
        torn.extend_from_slice(&frame[..cut]);
        fs::write(&segment, &torn).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.list().unwrap(), vec![first.clone()], "cut at {cut}");
        drop(spool);
        fs::write(&segment, &whole).unwrap();
        for (number, path) in index::segment_files(&dir.path().join("journal")).unwrap() {
            if number != 1 {
                fs::remove_file(path).unwrap();
            }
        }
    }
}

#[test]
fn open_cleans_tmp_and_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/spool");
    let spool = Spool::open(&root).unwrap();
    for d in ["tmp", "queue", "journal", "requests"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    assert_eq!(spool.queue_dir(), root.join("queue"));
    assert!(spool.list().unwrap().is_empty());
    drop(spool);
    fs::write(root.join("tmp/leftover.state-1"), b"x").unwrap();
    fs::create_dir(root.join("tmp/stray-dir")).unwrap();
    let _spool = Spool::open(&root).unwrap();
    assert!(names(&root.join("tmp")).is_empty());
}

#[test]
fn a_second_owner_is_refused_and_tools_attach_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Spool::open(dir.path()).unwrap();
    let id = owner.store(&meta(), MESSAGE).unwrap();
    assert!(matches!(
        Spool::open(dir.path()),
        Err(SpoolError::Locked(_))
    ));
    let tool = Spool::open_or_attach(dir.path()).unwrap();
    assert_eq!(tool.list().unwrap(), vec![id.clone()]);
    assert_eq!(tool.read(&id).unwrap().1, MESSAGE);
    assert!(matches!(
        tool.store(&meta(), MESSAGE),
        Err(SpoolError::ReadOnly)
    ));
    // A removal asked for by the tool is applied by the owner.
    tool.remove(&id).unwrap();
    assert!(owner.list().unwrap().is_empty());
    assert!(names(&dir.path().join("requests")).is_empty());
    drop(owner);
    assert!(
        Spool::open(dir.path()).is_ok(),
        "the lock goes with its owner"
    );
}

#[test]
fn the_two_file_layout_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fs::create_dir_all(&queue).unwrap();
    let id: MessageId = "00062f1c3a9b2e10-9f03a1c7".parse().unwrap();
    let stored = StoredMeta {
        id: id.to_string(),
        size: MESSAGE.len() as u64,
        meta: meta(),
    };
    fs::write(
        queue.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&stored).unwrap(),
    )
    .unwrap();
    fs::write(queue.join(format!("{id}.eml")), MESSAGE).unwrap();
    // A crash between the two renames of the old layout.
    fs::write(queue.join("00062f1c3a9b2e11-00000002.eml"), b"no json").unwrap();
    fs::write(queue.join(format!("{id}.state")), b"{}").unwrap();

    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.list().unwrap(), vec![id.clone()]);
    let (meta_read, bytes) = spool.read(&id).unwrap();
    assert_eq!((meta_read, bytes.as_slice()), (stored, MESSAGE));
    assert_eq!(names(&queue), [format!("{id}.state")]);
    drop(spool);
    assert_eq!(Spool::open(dir.path()).unwrap().list().unwrap(), vec![id]);
}

#[test]
fn dead_segments_are_deleted_and_sparse_ones_moved_forward() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        segment_bytes: 2_000,
    };
    let spool = Spool::open_with(dir.path(), options.clone()).unwrap();
    let ids: Vec<MessageId> = (0..40)
        .map(|i| spool.store(&meta(), format!("msg {i}").as_bytes()).unwrap())
        .collect();
    let journal = dir.path().join("journal");
    // Segments only: the next one's zeros (`spare`) are written on a
    // helper thread, and whether that file is there yet is timing.
    let segments = || {
        names(&journal)
            .into_iter()
            .filter(|n| n.ends_with(".log"))
            .collect::<Vec<_>>()
    };
    let before = segments().len();
    assert!(before >= 10, "{before} segments");
    let keep = [&ids[5], &ids[20]];
    for id in ids.iter().filter(|id| !keep.contains(id)) {
        spool.remove(id).unwrap();
    }
    let after = segments().len();
    assert!(
        after <= 4,
        "{after} segments left of {before}: {:?}",
        names(&journal)
    );
    let kept: Vec<MessageId> = keep.into_iter().cloned().collect();
    assert_eq!(spool.list().unwrap(), kept);
    assert_eq!(spool.read(&ids[5]).unwrap().1, b"msg 5");
    drop(spool);
    let spool = Spool::open_with(dir.path(), options).unwrap();
    assert_eq!(spool.list().unwrap(), kept);
    assert_eq!(spool.read(&ids[20]).unwrap().1, b"msg 20");
}

#[test]
fn concurrent_stores_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let body = format!("thread {t} message {i}");
                        (spool.store(&meta(), body.as_bytes()).unwrap(), body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let stored: Vec<(MessageId, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    drop(spool);
    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.list().unwrap().len(), 800);
    for (id, body) in stored {
        assert_eq!(spool.read(&id).unwrap().1, body.as_bytes());
    }
}

#[test]
fn read_of_unknown_id_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id: MessageId = "00062f1c3a9b2e10-9f03a1c7".parse().unwrap();
    assert!(matches!(spool.read(&id), Err(SpoolError::NotFound(got)) if got == id));
}

#[test]
fn json_field_names_are_the_documented_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool.store(&meta(), MESSAGE).unwrap();
    let value = serde_json::to_value(spool.read(&id).unwrap().0).unwrap();

    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let mut expected = vec![
        "id",
        "size",
        "received_at",
        "mail_from",
        "rcpt_to",
        "body",
        "declared_size",
        "helo",
        "client_addr",
        "server_addr",
        "listener",
        "tls",
        "auth",
        "mail_auth_param",
    ];
    expected.sort_unstable();
    assert_eq!(keys(&value), expected);
    assert_eq!(keys(&value["tls"]), ["cipher", "version"]);
    assert_eq!(
        keys(&value["auth"]),
        ["authn_id", "authz_id", "credential", "mechanism"]
    );
    assert_eq!(keys(&value["auth"]["credential"]), ["id", "label"]);
    assert_eq!(value["id"], id.to_string());
    assert_eq!(value["size"], MESSAGE.len());
    assert_eq!(value["declared_size"], 1234);
    assert_eq!(value["mail_auth_param"], "<>");
}

#[test]
fn a_failed_append_is_reported_and_the_next_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let journal = dir.path().join("journal");
    fs::remove_dir(&journal).unwrap();
    let err = spool.store(&meta(), MESSAGE).unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err:?}");
    assert!(spool.list().unwrap().is_empty());
    fs::create_dir(&journal).unwrap();
    let id = spool.store(&meta(), MESSAGE).unwrap();
    assert_eq!(spool.list().unwrap(), vec![id]);
}

#[test]
fn store_of_a_ten_mib_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let message: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let id = spool.store(&meta(), &message).unwrap();
    let (stored, bytes) = spool.read(&id).unwrap();
    assert_eq!(stored.size, message.len() as u64);
    assert!(bytes == message);
}

#[test]
fn state_is_written_replaced_and_removed_with_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool.store(&meta(), MESSAGE).unwrap();
    assert_eq!(spool.read_state(&id).unwrap(), None);
    spool.write_state(&id, b"{\"attempts\":1}").unwrap();
    spool.write_state(&id, b"{\"attempts\":2}").unwrap();
    assert_eq!(
        spool.read_state(&id).unwrap().as_deref(),
        Some(&b"{\"attempts\":2}"[..])
    );
    assert!(
        names(&dir.path().join("tmp")).is_empty(),
        "no staged state left behind"
    );
    assert_eq!(
        spool.list().unwrap(),
        vec![id.clone()],
        "a state file is not an entry"
    );
    spool.remove(&id).unwrap();
    assert!(names(&dir.path().join("queue")).is_empty());
    spool.remove(&id).unwrap();
}

#[test]
fn orphan_states_are_swept_and_attach_does_no_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool.store(&meta(), MESSAGE).unwrap();
    spool.write_state(&id, b"{}").unwrap();
    fs::write(
        dir.path().join("queue/0000000000000001-00000000.state"),
        b"{}",
    )
    .unwrap();
    fs::write(dir.path().join("tmp/in-flight.state-1"), b"x").unwrap();
    let attached = Spool::attach(dir.path()).unwrap();
    assert_eq!(names(&dir.path().join("tmp")), vec!["in-flight.state-1"]);
    assert_eq!(attached.remove_orphan_states().unwrap(), 1);
    assert!(attached.read_state(&id).unwrap().is_some());
    assert!(Spool::attach(&dir.path().join("missing")).is_err());
}

#[test]
fn id_tells_when_it_was_spooled() {
    let id: MessageId = "00062f1c3a9b2e10-9f03a1c7".parse().unwrap();
    assert_eq!(id.spooled_at_micros(), 0x62f1c3a9b2e10);
}

#[test]
fn segments_made_from_spares_keep_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        segment_bytes: 8_192,
    };
    let spool = Spool::open_with(dir.path(), options.clone()).unwrap();
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(spool.store(&meta(), format!("msg {i}").as_bytes()).unwrap());
        // Give the helper thread time to finish a spare now and then.
        if i % 10 == 9 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let journal = dir.path().join("journal");
    assert!(names(&journal).len() >= 5, "{:?}", names(&journal));
    drop(spool);
    let spool = Spool::open_with(dir.path(), options).unwrap();
    assert_eq!(spool.list().unwrap(), ids);
    assert_eq!(spool.read(&ids[59]).unwrap().1, b"msg 59");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!names(&journal).contains(&"spare".to_string()));
}

#[test]
fn segments_without_a_header_are_removed_by_the_owner_and_skipped_by_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let spool = Spool::open(dir.path()).unwrap();
        spool.store(&meta(), MESSAGE).unwrap()
    };
    let journal = dir.path().join("journal");
    // What a full disk left: an empty file, and one whose header write was cut.
    fs::write(journal.join("0000000000000002.log"), b"").unwrap();
    fs::write(journal.join("0000000000000003.log"), b"PCS").unwrap();

    let reader = Spool::attach(dir.path()).unwrap();
    assert_eq!(reader.list().unwrap(), vec![id.clone()]);
    assert_eq!(names(&journal).len(), 3, "a reader removes nothing");
    drop(reader);

    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.list().unwrap(), vec![id.clone()]);
    assert_eq!(names(&journal), ["0000000000000001.log"]);
    // New segments still get fresh numbers, and the message reads back.
    let (_, bytes) = spool.read(&id).unwrap();
    assert_eq!(bytes, MESSAGE);
}

/// Every mode under `dir` (itself excluded) that is not `0700` for a
/// directory or `0600` for a file.
fn not_private(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut wrong = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            wrong.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            wrong.extend(not_private(&path));
        }
    }
    wrong
}

/// The journal holds every queued message and its sender's identity: under
/// the usual umask 022 it was created `0644` in `0755` directories.
#[test]
#[allow(unsafe_code)] // libc, see the SAFETY note below
fn every_file_and_directory_the_spool_creates_is_private() {
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let spool = Spool::open_with(&root, SpoolOptions { segment_bytes: 1 }).unwrap();
    let first = spool.store(&meta(), MESSAGE).unwrap();
    spool.store(&meta(), MESSAGE).unwrap();
    spool.write_state(&first, b"{\"attempts\":1}").unwrap();
    drop(spool);
    assert_eq!(not_private(dir.path()), Vec::<String>::new());
}

#[test]
fn stored_json_is_the_json_of_stored_meta() {
    let mut full = meta();
    full.smtputf8 = true;
    full.xclient = Some(XclientMeta {
        proxy_addr: "10.0.0.1:1".into(),
        ..Default::default()
    });
    full.meta
        .insert("k\"ey".into(), serde_json::json!({"a": [1, "é\n"]}));
    full.dsn = Some(DsnMeta::default());
    let mut bare = meta();
    (bare.tls, bare.auth, bare.helo, bare.declared_size) = (None, None, None, None);
    for m in [meta(), full, bare] {
        let stored = StoredMeta {
            id: "00062f1c3a9b2e10-9f03a1c7".into(),
            size: 987_654,
            meta: m.clone(),
        };
        let json = meta::stored_json(&stored.id, stored.size, &m).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            serde_json::to_string(&stored).unwrap()
        );
    }
}

/// Every field of the metadata set, by name (a field added to
/// `MessageMeta` or its parts stops this from compiling until
/// `stored_json` and this test have it), with `text` in every string.
fn every_field(text: &str) -> MessageMeta {
    let t = || text.to_string();
    MessageMeta {
        received_at: t(),
        mail_from: t(),
        rcpt_to: vec![t(), t()],
        body: t(),
        declared_size: Some(u64::MAX),
        helo: Some(t()),
        client_addr: t(),
        server_addr: t(),
        listener: t(),
        tls: Some(TlsMeta {
            version: t(),
            cipher: t(),
            client_certificate: Some(ClientCertMeta {
                verified: false,
                subject: t(),
                issuer: t(),
                sha256: t(),
            }),
        }),
        auth: Some(AuthMeta {
            authn_id: t(),
            authz_id: t(),
            mechanism: t(),
            user_data: Some(serde_json::json!({ "k": text, "n": [1, null, true] })),
            credential: Some(CredentialMeta {
                id: t(),
                label: t(),
            }),
        }),
        mail_auth_param: Some(t()),
        xclient: Some(XclientMeta {
            proxy_addr: t(),
            name: Some(t()),
            proto: Some(t()),
            helo: Some(t()),
            login: Some(t()),
            dest_addr: Some(t()),
            dest_port: Some(t()),
        }),
        meta: [(t(), serde_json::Value::String(t()))]
            .into_iter()
            .collect(),
        held: Some(t()),
        smtputf8: true,
        dsn: Some(DsnMeta {
            ret: Some(t()),
            envid: Some(t()),
            recipients: vec![RcptDsnMeta {
                rcpt: t(),
                notify: Some(t()),
                orcpt: Some(t()),
            }],
        }),
    }
}

#[test]
fn stored_json_writes_what_serde_writes_for_every_field_and_every_byte() {
    let mut texts: Vec<String> = (0u8..=0x7f)
        .map(|b| format!("a{}z", char::from(b)))
        .collect();
    texts.extend(
        [
            "",
            "é",
            "\u{2028}",
            "\u{10ffff}",
            "\"\\\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
        ]
        .map(String::from),
    );
    for text in &texts {
        let mut m = every_field(text);
        for _ in 0..2 {
            let stored = StoredMeta {
                id: text.clone(),
                size: 0,
                meta: m.clone(),
            };
            let json = meta::stored_json(&stored.id, stored.size, &m).unwrap();
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(&stored).unwrap(),
                "text {text:?}"
            );
            // And with every optional part absent.
            (m.declared_size, m.helo, m.tls, m.auth, m.mail_auth_param) =
                (None, None, None, None, None);
            (m.xclient, m.held, m.dsn, m.smtputf8) = (None, None, None, false);
            m.meta.clear();
            m.rcpt_to.clear();
        }
    }
}
