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
        }),
        mail_auth_param: Some("<>".into()),
        xclient: None,
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
    assert_eq!(
        names(&spool.queue_dir()),
        vec![format!("{id}.eml"), format!("{id}.json")]
    );
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
fn open_cleans_tmp_and_incomplete_entries_but_keeps_complete_ones() {
    let dir = tempfile::tempdir().unwrap();
    let complete = {
        let spool = Spool::open(dir.path()).unwrap();
        spool.store(&meta(), MESSAGE).unwrap()
    };
    let tmp = dir.path().join("tmp");
    let queue = dir.path().join("queue");
    // A crash before the renames, in every stage.
    fs::write(tmp.join("00062f1c3a9b2e10-00000001.eml"), b"partial").unwrap();
    fs::write(tmp.join("00062f1c3a9b2e10-00000001.json"), b"{").unwrap();
    fs::create_dir(tmp.join("stray-dir")).unwrap();
    // A crash between the two renames.
    let orphan = "00062f1c3a9b2e11-00000002.eml";
    fs::write(queue.join(orphan), b"no json").unwrap();

    let spool = Spool::open(dir.path()).unwrap();
    assert!(names(&tmp).is_empty());
    assert_eq!(
        names(&queue),
        vec![format!("{complete}.eml"), format!("{complete}.json")]
    );
    assert_eq!(spool.list().unwrap(), vec![complete.clone()]);
    assert_eq!(spool.read(&complete).unwrap().1, MESSAGE);
}

#[test]
fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/spool");
    let spool = Spool::open(&root).unwrap();
    assert!(root.join("tmp").is_dir());
    assert!(root.join("queue").is_dir());
    assert_eq!(spool.queue_dir(), root.join("queue"));
    assert!(spool.list().unwrap().is_empty());
}

#[test]
fn list_ignores_foreign_files_and_json_without_eml() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool.store(&meta(), MESSAGE).unwrap();
    let queue = spool.queue_dir();
    fs::write(queue.join("README"), b"x").unwrap();
    fs::write(queue.join("not-an-id.json"), b"{}").unwrap();
    fs::write(queue.join("not-an-id.eml"), b"x").unwrap();
    fs::write(queue.join("00062f1c3a9b2e10-00000003.json"), b"{}").unwrap();
    assert_eq!(spool.list().unwrap(), vec![id]);
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
    let raw = fs::read(spool.queue_dir().join(format!("{id}.json"))).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();

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
    assert_eq!(keys(&value["auth"]), ["authn_id", "authz_id", "mechanism"]);
    assert_eq!(value["id"], id.to_string());
    assert_eq!(value["size"], MESSAGE.len());
    assert_eq!(value["declared_size"], 1234);
    assert_eq!(value["mail_auth_param"], "<>");
}

#[test]
fn store_fails_cleanly_when_queue_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    fs::remove_dir(spool.queue_dir()).unwrap();
    let err = spool.store(&meta(), MESSAGE).unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err:?}");
    // Nothing half-written is left behind in tmp/.
    assert!(names(&dir.path().join("tmp")).is_empty());
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
    fs::write(dir.path().join("tmp/in-flight.eml"), b"x").unwrap();
    let attached = Spool::attach(dir.path()).unwrap();
    assert_eq!(names(&dir.path().join("tmp")), vec!["in-flight.eml"]);
    assert_eq!(attached.remove_orphan_states().unwrap(), 1);
    assert!(attached.read_state(&id).unwrap().is_some());
    assert!(Spool::attach(&dir.path().join("missing")).is_err());
}

#[test]
fn id_tells_when_it_was_spooled() {
    let id: MessageId = "00062f1c3a9b2e10-9f03a1c7".parse().unwrap();
    assert_eq!(id.spooled_at_micros(), 0x62f1c3a9b2e10);
}
