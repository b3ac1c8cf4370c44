//! One behaviour suite for every [`LimitsBackend`]: the memory backend
//! always, Redis (a real `redis-server` started by the test) with the
//! `redis` feature.

use std::net::IpAddr;
use std::time::Duration;

use portcullis_limits::sending::Quota;
use portcullis_limits::{Ban, Counter, LimitsBackend, MemoryBackend, Timestamp};

const T0: Timestamp = Timestamp(1_700_000_000_000);

async fn conformance(backend: &dyn LimitsBackend) {
    let minute = Duration::from_secs(60);
    let a = [Counter {
        key: "fail:ip:192.0.2.1".into(),
        window: minute,
    }];
    let b = [Counter {
        key: "fail:ip:192.0.2.2".into(),
        window: minute,
    }];
    assert_eq!(backend.hit(&a, T0).await.unwrap(), [1]);
    assert_eq!(backend.hit(&a, T0).await.unwrap(), [2]);
    assert_eq!(
        backend.peek(&a, T0).await.unwrap(),
        [2],
        "peek counts nothing"
    );
    assert_eq!(
        backend.peek(&b, T0).await.unwrap(),
        [0],
        "keys are separate"
    );
    let both = [a[0].clone(), b[0].clone()];
    assert_eq!(backend.hit(&both, T0).await.unwrap(), [3, 1]);
    let later = T0 + Duration::from_secs(150);
    assert_eq!(
        backend.peek(&a, later).await.unwrap(),
        [0],
        "two windows on"
    );

    consume_conformance(backend, minute).await;

    assert!(!backend.marked("ok:192.0.2.1:alice", T0).await.unwrap());
    backend
        .mark("ok:192.0.2.1:alice", T0 + minute, T0)
        .await
        .unwrap();
    assert!(backend.marked("ok:192.0.2.1:alice", T0).await.unwrap());
    assert!(!backend.marked("ok:192.0.2.1:bob", T0).await.unwrap());

    let ip: IpAddr = "198.51.100.9".parse().unwrap();
    let ban = |expires_ms| Ban {
        ip,
        reason: "test".into(),
        created_ms: T0.millis(),
        expires_ms,
    };
    assert!(backend.banned(ip, T0).await.unwrap().is_none());
    backend.ban(ban(T0.millis() + 60_000)).await.unwrap();
    assert_eq!(
        backend.banned(ip, T0).await.unwrap().unwrap().reason,
        "test"
    );
    assert_eq!(backend.bans(T0).await.unwrap().len(), 1);
    assert!(
        backend.banned(ip, T0 + minute).await.unwrap().is_none(),
        "expired"
    );
    assert!(backend.unban(ip).await.unwrap());
    assert!(!backend.unban(ip).await.unwrap());
    assert!(backend.bans(T0).await.unwrap().is_empty());
}

/// Sending quotas: all or nothing, the first refusing quota named, counts
/// that add only when every quota allows.
async fn consume_conformance(backend: &dyn LimitsBackend, minute: Duration) {
    let quota = |key: &str, limit, amount| Quota {
        key: key.into(),
        window: minute,
        limit,
        amount,
    };
    let mail = [
        quota("send:user:alice:messages", 2, 1),
        quota("send:user:alice:recipients", 3, 0),
    ];
    let first = backend.consume(&mail, T0).await.unwrap();
    assert_eq!((first.refused, first.counts), (None, vec![1, 0]));
    let added = [Quota::add("send:user:alice:recipients".into(), minute, 3)];
    assert_eq!(backend.consume(&added, T0).await.unwrap().counts, [3]);
    let refused = backend.consume(&mail, T0).await.unwrap();
    assert_eq!(refused.refused, Some(1), "recipients used up");
    assert_eq!(refused.counts, [1, 3], "nothing added when refused");
    let messages_only = [quota("send:user:alice:messages", 2, 1)];
    assert_eq!(
        backend.consume(&messages_only, T0).await.unwrap().refused,
        None
    );
    assert_eq!(
        backend.consume(&messages_only, T0).await.unwrap().refused,
        Some(0)
    );
    let later = T0 + Duration::from_secs(150);
    assert_eq!(
        backend
            .consume(&messages_only, later)
            .await
            .unwrap()
            .refused,
        None
    );
}

#[tokio::test]
async fn memory_backend_conforms() {
    conformance(&MemoryBackend::new()).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_backend_conforms_and_fails_fast_when_down() {
    use portcullis_integration_tests::RedisServer;
    use portcullis_limits::{LimitsError, RedisBackend};

    let mut redis = RedisServer::start()
        .expect("redis-server is not installed: apt-get install -y redis-server");
    let backend = RedisBackend::new(&redis.url()).unwrap();
    conformance(&backend).await;
    redis.kill();
    let counter = [Counter {
        key: "k".into(),
        window: Duration::from_secs(60),
    }];
    assert!(matches!(
        backend.hit(&counter, T0).await,
        Err(LimitsError::Unavailable(_))
    ));
}

/// Sending quotas with the shared backend down: counted locally (fail
/// open for counting), so a limit still holds in this process.
#[cfg(feature = "redis")]
#[tokio::test]
async fn sending_quotas_are_counted_locally_while_redis_is_down() {
    use std::sync::Arc;

    use portcullis_integration_tests::RedisServer;
    use portcullis_limits::{Limiter, LimitsConfig, RedisBackend};

    let mut redis = RedisServer::start()
        .expect("redis-server is not installed: apt-get install -y redis-server");
    let backend = Arc::new(RedisBackend::new(&redis.url()).unwrap());
    let limiter = Limiter::new(
        LimitsConfig::default(),
        backend,
        Arc::new(MemoryBackend::new()),
    );
    redis.kill();
    let quota = [Quota {
        key: "send:user:alice:messages:60000".into(),
        window: Duration::from_secs(60),
        limit: 2,
        amount: 1,
    }];
    assert_eq!(limiter.consume(&quota, T0).await.refused, None);
    assert_eq!(limiter.consume(&quota, T0).await.refused, None);
    assert_eq!(limiter.consume(&quota, T0).await.refused, Some(0));
    assert!(!limiter.shared_backend_up());
}
