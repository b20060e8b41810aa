//! SAML login state shared by the cluster (issue 19 item 1, ASA 9.18.3's SAML
//! with DNS load balancing): the login context of an SSO form (`ctx`, the
//! RelayState), the AuthnRequests a node sent, the assertion replay cache and
//! the one-time SSO tokens. A login may then start on one node, have its ACS post
//! land on another and its `<sso-token>` reach a third.
//!
//! ```text
//! headend:saml:ctx:{CTX}    JSON SsoContext                       PX 600 s, GETDEL on use
//! headend:saml:req:{ID}     JSON {relay, expires_ms}              PX request TTL, GETDEL on answer
//! headend:saml:asrt:{ID}    "1": assertion ID accepted            PXAT its replay limit (SET NX)
//! headend:saml:tok:{TOKEN}  JSON grant (tunnel group + login)     PX 120 s, GETDEL on redeem
//! ```
//!
//! Every entry is single use and taken with GETDEL (atomic), so two nodes never
//! both accept one answer, one assertion or one token. The node's own in-memory
//! stores stay authoritative for what happens on it; Redis is asked only for what
//! it does not know. Unlike sessions, nothing here survives a Redis restart (a
//! login in progress then starts again).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::keys::PREFIX;
use crate::saml_web::{SsoContext, SsoGrant};

fn ctx_key(ctx: &str) -> String {
    format!("{PREFIX}saml:ctx:{ctx}")
}
fn req_key(id: &str) -> String {
    format!("{PREFIX}saml:req:{id}")
}
fn assertion_key(id: &str) -> String {
    format!("{PREFIX}saml:asrt:{id}")
}
fn token_key(token: &str) -> String {
    format!("{PREFIX}saml:tok:{token}")
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CtxWire {
    tunnel_group: String,
    strap_dh: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct RequestWire {
    relay: Option<String>,
    expires_ms: u64,
}

/// An [`SsoGrant`] as the store keeps it (`SamlLogin` has no serde).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct GrantWire {
    tunnel_group: String,
    name_id: String,
    name_id_format: Option<String>,
    attributes: BTreeMap<String, Vec<String>>,
    session_not_on_or_after_ms: Option<u64>,
    assertion_id: String,
    sp_tunnel_group: String,
    replay_until_ms: u64,
}

impl GrantWire {
    fn of(g: &SsoGrant) -> Self {
        let l = &g.login;
        GrantWire {
            tunnel_group: g.tunnel_group.clone(),
            name_id: l.name_id.clone(),
            name_id_format: l.name_id_format.clone(),
            attributes: l.attributes.clone(),
            session_not_on_or_after_ms: l.session_not_on_or_after.map(unix_ms),
            assertion_id: l.assertion_id.clone(),
            sp_tunnel_group: l.tunnel_group.clone(),
            replay_until_ms: unix_ms(l.replay_until),
        }
    }

    fn grant(self) -> SsoGrant {
        SsoGrant {
            tunnel_group: self.tunnel_group,
            login: auth::saml::SamlLogin {
                name_id: self.name_id,
                name_id_format: self.name_id_format,
                attributes: self.attributes,
                session_not_on_or_after: self.session_not_on_or_after_ms.map(from_unix_ms),
                assertion_id: self.assertion_id,
                tunnel_group: self.sp_tunnel_group,
                replay_until: from_unix_ms(self.replay_until_ms),
            },
        }
    }
}

/// What the store says about the AuthnRequest a Response answers.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestClaim {
    /// Sent by some node, unanswered until now: this node takes the answer.
    Sent {
        relay: Option<String>,
        expires: SystemTime,
    },
    /// Never sent, expired or already answered (on any node).
    Unknown,
    /// The assertion ID was accepted before (on any node).
    Replayed,
}

/// Atomically: a known assertion ID is a replay; else the request is taken.
const CLAIM_SCRIPT: &str = r#"
if redis.call('EXISTS', ARGV[2]) == 1 then return 'replayed' end
local v = redis.call('GET', ARGV[1])
if not v then return 'unknown' end
redis.call('DEL', ARGV[1])
return v
"#;

fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

impl Cluster {
    /// Publishes an SSO form's login context (from a sync caller: in a task;
    /// the browser's round trip through the IdP takes far longer).
    pub fn saml_publish_context(
        self: &std::sync::Arc<Self>,
        ctx: &str,
        c: &SsoContext,
        ttl: Duration,
    ) {
        let me = self.clone();
        let key = ctx_key(ctx);
        let value = serde_json::to_string(&CtxWire {
            tunnel_group: c.tunnel_group.clone(),
            strap_dh: c.strap_dh.clone(),
        })
        .unwrap_or_default();
        tokio::spawn(async move {
            let mut conn = me.conn.clone();
            let r: redis::RedisResult<()> = conn.pset_ex(&key, value, ms(ttl)).await;
            if let Err(e) = r {
                tracing::warn!("cluster: SAML login context not shared: {e}");
            }
        });
    }

    /// Takes a login context another node minted (single use).
    pub async fn saml_take_context(&self, ctx: &str) -> redis::RedisResult<Option<SsoContext>> {
        let mut conn = self.conn.clone();
        let v: Option<String> = conn.get_del(ctx_key(ctx)).await?;
        Ok(v.and_then(|v| serde_json::from_str::<CtxWire>(&v).ok())
            .map(|w| SsoContext {
                tunnel_group: w.tunnel_group,
                strap_dh: w.strap_dh,
            }))
    }

    /// Forgets a context this node redeemed itself (no other node may use it).
    pub async fn saml_drop_context(&self, ctx: &str) {
        let mut conn = self.conn.clone();
        let _: redis::RedisResult<()> = conn.del(ctx_key(ctx)).await;
    }

    /// Publishes an AuthnRequest this node sent, so any node's ACS may take its
    /// answer.
    pub async fn saml_publish_request(
        &self,
        id: &str,
        relay: Option<&str>,
        expires: SystemTime,
    ) -> redis::RedisResult<()> {
        let ttl = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::from_millis(1));
        let value = serde_json::to_string(&RequestWire {
            relay: relay.map(str::to_string),
            expires_ms: unix_ms(expires),
        })
        .unwrap_or_default();
        let mut conn = self.conn.clone();
        conn.pset_ex(req_key(id), value, ms(ttl)).await
    }

    /// Before validating a Response: is its assertion a replay, and which
    /// request does it answer (taken from the store, so no other node accepts an
    /// answer to it)?
    pub async fn saml_claim_request(
        &self,
        request_id: &str,
        assertion_id: Option<&str>,
    ) -> redis::RedisResult<RequestClaim> {
        let asrt = assertion_id.map(assertion_key).unwrap_or_default();
        let v: String = self
            .eval(CLAIM_SCRIPT, &[req_key(request_id), asrt])
            .await?;
        Ok(match v.as_str() {
            "replayed" => RequestClaim::Replayed,
            "unknown" => RequestClaim::Unknown,
            json => match serde_json::from_str::<RequestWire>(json) {
                Ok(w) => RequestClaim::Sent {
                    relay: w.relay,
                    expires: from_unix_ms(w.expires_ms),
                },
                Err(_) => RequestClaim::Unknown,
            },
        })
    }

    /// After a Response validated: records its assertion ID cluster-wide until
    /// `until`; false when another node accepted it first (a replay).
    pub async fn saml_accept_assertion(
        &self,
        assertion_id: &str,
        until: SystemTime,
    ) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let at = unix_ms(until).max(unix_ms(SystemTime::now()) + 1000);
        let set: Option<String> = redis::cmd("SET")
            .arg(assertion_key(assertion_id))
            .arg("1")
            .arg("NX")
            .arg("PXAT")
            .arg(at)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Publishes a one-time SSO token minted here, so the `<sso-token>` may
    /// reach any node.
    pub async fn saml_publish_token(
        &self,
        token: &str,
        grant: &SsoGrant,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let value = serde_json::to_string(&GrantWire::of(grant)).unwrap_or_default();
        let mut conn = self.conn.clone();
        conn.pset_ex(token_key(token), value, ms(ttl)).await
    }

    /// Takes a token another node minted (single use).
    pub async fn saml_take_token(&self, token: &str) -> redis::RedisResult<Option<SsoGrant>> {
        let mut conn = self.conn.clone();
        let v: Option<String> = conn.get_del(token_key(token)).await?;
        Ok(v.and_then(|v| serde_json::from_str::<GrantWire>(&v).ok())
            .map(GrantWire::grant))
    }

    /// Forgets a token this node redeemed itself.
    pub async fn saml_drop_token(&self, token: &str) {
        let mut conn = self.conn.clone();
        let _: redis::RedisResult<()> = conn.del(token_key(token)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_survives_the_store_unchanged() {
        let t = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        let g = SsoGrant {
            tunnel_group: "SAML-TG".into(),
            login: auth::saml::SamlLogin {
                name_id: "alice@example.com".into(),
                name_id_format: Some(
                    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into(),
                ),
                attributes: BTreeMap::from([("groups".into(), vec!["a".into(), "b".into()])]),
                session_not_on_or_after: Some(t),
                assertion_id: "_abc".into(),
                tunnel_group: "SAML-TG".into(),
                replay_until: t,
            },
        };
        let json = serde_json::to_string(&GrantWire::of(&g)).unwrap();
        let back = serde_json::from_str::<GrantWire>(&json).unwrap().grant();
        assert_eq!(back.login, g.login);
        assert_eq!(back.tunnel_group, g.tunnel_group);
    }

    #[test]
    fn a_request_entry_keeps_its_relay_state_and_expiry() {
        let w = RequestWire {
            relay: Some("ctx123".into()),
            expires_ms: 42,
        };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<RequestWire>(&json).unwrap(), w);
        assert_eq!(unix_ms(from_unix_ms(42)), 42);
    }
}
