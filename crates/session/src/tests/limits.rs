//! The invalid-command budget: unknown or malformed commands, then `421`.

use super::*;

#[test]
fn invalid_commands_past_the_limit_get_421_and_close() {
    let mut config = SessionConfig::new("mx.test");
    config.auth = AuthPolicy::Disabled;
    config.max_invalid_commands = 3;
    let mut h = Harness::with(config, None);
    h.take();
    // Valid commands in between do not reset or count.
    let codes = h.codes("FOO\r\nNOOP\r\nMAIL FROM:bad\r\nBAR\r\n");
    assert_eq!(codes, ["500 5.5.1", "250 2.0.0", "501 5.5.4", "500 5.5.1"]);
    let (replies, effect) = h.send("BAZ\r\n");
    assert!(replies.starts_with("421 4.7.0"), "{replies}");
    assert!(matches!(effect, Some(Effect::Close)));
    assert!(h.session.is_closed());
}
