use super::*;

fn done(input: &[u8]) -> (ProxyHeader, usize) {
    match parse(input) {
        Ok(ProxyParse::Done { header, consumed }) => (header, consumed),
        other => panic!("{input:?}: {other:?}"),
    }
}

fn proxied(source: &str, destination: &str) -> ProxyHeader {
    ProxyHeader::Proxied {
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    }
}

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 587\r\nEHLO x\r\n";
    assert_eq!(
        done(line),
        (proxied("192.0.2.7:4711", "198.51.100.1:587"), 44)
    );
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 465\r\n";
    assert_eq!(
        done(line).0,
        proxied("[2001:db8::7]:4711", "[2001:db8::1]:465")
    );
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Unknown, 15));
    assert_eq!(
        done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").0,
        ProxyHeader::Unknown
    );
}

#[test]
fn v1_refusals() {
    for line in [
        &b"PROXY TCP4 192.0.2.7 198.51.100.1 4711\r\n"[..],
        b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 04711 587\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 70000 587\r\n",
        b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
    ] {
        assert!(matches!(parse(line), Err(ProxyError::V1(_))), "{line:?}");
    }
    let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
    assert!(matches!(parse(&long), Err(ProxyError::V1(_))));
}

#[test]
fn v2_tcp4_tcp6_local_and_tlvs() {
    let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
    body.extend_from_slice(&4711u16.to_be_bytes());
    body.extend_from_slice(&587u16.to_be_bytes());
    body.extend_from_slice(&[0x04, 0x00, 0x01, 0xaa]); // a NOOP TLV, ignored
    let header = v2(1, 0x11, &body);
    let mut input = header.clone();
    input.extend_from_slice(b"\x16\x03\x01");
    assert_eq!(
        done(&input),
        (proxied("192.0.2.7:4711", "198.51.100.1:587"), header.len())
    );

    let mut body = vec![0u8; 36];
    body[15] = 7;
    body[31] = 1;
    body[32..34].copy_from_slice(&4711u16.to_be_bytes());
    body[34..36].copy_from_slice(&465u16.to_be_bytes());
    assert_eq!(
        done(&v2(1, 0x21, &body)).0,
        proxied("[::7]:4711", "[::1]:465")
    );
    assert_eq!(done(&v2(0, 0x00, &[])).0, ProxyHeader::Local);
    assert_eq!(done(&v2(1, 0x31, &[0; 216])).0, ProxyHeader::Unknown);
}

#[test]
fn v2_refusals() {
    assert!(matches!(
        parse(&v2(1, 0x11, &[0; 4])),
        Err(ProxyError::V2(_))
    ));
    assert!(matches!(
        parse(&v2(1, 0x21, &[0; 12])),
        Err(ProxyError::V2(_))
    ));
    assert!(matches!(
        parse(&v2(2, 0x11, &[0; 12])),
        Err(ProxyError::V2(_))
    ));
    let mut bad_version = v2(1, 0x11, &[0; 12]);
    bad_version[12] = 0x11;
    assert!(matches!(parse(&bad_version), Err(ProxyError::V2(_))));
    let mut too_long = v2(1, 0x11, &[]);
    too_long[14..16].copy_from_slice(&5000u16.to_be_bytes());
    assert!(matches!(parse(&too_long), Err(ProxyError::V2(_))));
}

#[test]
fn anything_else_is_not_a_header() {
    for input in [
        &b"EHLO x\r\n"[..],
        b"\x16\x03\x01",
        b"PROXZ",
        b"\r\n\r\n\0\r\nQUIX",
    ] {
        assert_eq!(parse(input), Err(ProxyError::NotProxy), "{input:?}");
    }
}

/// The driver reads exactly what `needed` says: feeding the header one
/// answer at a time never takes a byte past its end.
#[test]
fn incomplete_never_asks_past_the_header() {
    let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
    body.extend_from_slice(&[0x12, 0x67, 0x02, 0x4b]);
    let v2_header = v2(1, 0x11, &body);
    for header in [
        &b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 587\r\n"[..],
        b"PROXY UNKNOWN\r\n",
        &v2_header,
    ] {
        let mut stream = header.to_vec();
        stream.extend_from_slice(b"after");
        let mut have = 0;
        loop {
            match parse(&stream[..have]).unwrap() {
                ProxyParse::Incomplete { needed } => {
                    assert!(needed > 0);
                    have += needed;
                    assert!(have <= header.len(), "over-read on {header:?}");
                }
                ProxyParse::Done { consumed, .. } => {
                    assert_eq!(consumed, header.len());
                    break;
                }
            }
        }
    }
}
