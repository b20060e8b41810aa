//! The Redis key schema of a headend cluster (issue 19) and the Lua scripts that
//! change it atomically. Sans-IO: names and script replies only; `mod.rs` sends them.
//!
//! ```text
//! headend:sess:{SID}        JSON SessionRecord              PX record TTL (renewed by the owner)
//! headend:owner:{SID}       "NODE FENCE"                     PX lease (renewed by the owner)
//! headend:fence:{SID}       fencing token, INCR on every new owner (never goes down)
//! headend:addr4:{POOL}:{N}  SID holding IPv4 address N (u32) PX record TTL
//! headend:cursor4:{POOL}    next address to try (round robin, as the local pools do)
//! headend:acct:{ACCT-ID}    SID: the Acct-Session-Id lives on in the cluster
//! headend:node:{NODE}       heartbeat of a running node      PX lease
//! headend:born              when this store (re)started empty (ms, Redis TIME)
//! ```
//!
//! SID is the hex SHA-256 of the session cookie: Redis never holds a usable cookie.
//! Every script reads `headend:born`; when it is missing the store lost its data (a
//! Redis restart without persistence) and allocations wait [`REFILL_GRACE_LEASES`]
//! leases so every node writes its live sessions back first.

/// Prefix of every key; several clusters may share one Redis with different DBs.
pub const PREFIX: &str = "headend:";

/// Leases after an empty store is first written during which no address is handed
/// out and no takeover happens: every live node renews (and so rewrites) its
/// sessions within one third of a lease.
pub const REFILL_GRACE_LEASES: u64 = 2;

pub fn session(sid: &str) -> String {
    format!("{PREFIX}sess:{sid}")
}
pub fn owner(sid: &str) -> String {
    format!("{PREFIX}owner:{sid}")
}
pub fn fence(sid: &str) -> String {
    format!("{PREFIX}fence:{sid}")
}
pub fn addr4_prefix(pool: &str) -> String {
    format!("{PREFIX}addr4:{pool}:")
}
pub fn addr4(pool: &str, a: std::net::Ipv4Addr) -> String {
    format!("{}{}", addr4_prefix(pool), u32::from(a))
}
pub fn cursor4(pool: &str) -> String {
    format!("{PREFIX}cursor4:{pool}")
}
pub fn acct(acct_session_id: &str) -> String {
    format!("{PREFIX}acct:{acct_session_id}")
}
pub fn node(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}
pub fn born() -> String {
    format!("{PREFIX}born")
}
/// Pattern for listing every session record (`SCAN MATCH`).
pub fn session_pattern() -> String {
    format!("{PREFIX}sess:*")
}
/// Pub/sub channel of one node: commands for the sessions it holds.
pub fn node_channel(node: &str) -> String {
    format!("{PREFIX}cmd:{node}")
}

/// The value of an owner key.
pub fn owner_value(node: &str, fence: u64) -> String {
    format!("{node} {fence}")
}

/// Parses an owner key's value: (node, fence).
pub fn parse_owner(v: &str) -> Option<(&str, u64)> {
    let (n, f) = v.rsplit_once(' ')?;
    Some((n, f.parse().ok()?))
}

/// Shared prelude: `born_ok()` is false during the refill grace of an empty store.
/// KEYS are not declared (the keys depend on what the script finds), so these
/// scripts need a single Redis (or one Redis Cluster slot), not a sharded cluster.
const PRELUDE: &str = r#"
local P = 'headend:'
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function born_ok(lease_ms, grace)
  local b = redis.call('GET', P .. 'born')
  if not b then
    redis.call('SET', P .. 'born', now_ms())
    return false
  end
  return now_ms() >= tonumber(b) + lease_ms * grace
end
"#;

/// ALLOC4: claim an IPv4 address for SID in one pool.
/// ARGV: sid, pool, first(u32), last(u32), want(u32 or 0), record_ms, lease_ms, grace.
/// Reply: the address (u32), -1 pool exhausted, -2 store refilling.
pub fn alloc4_script() -> String {
    format!(
        "{PRELUDE}{}",
        r#"
local sid, pool = ARGV[1], ARGV[2]
local first, last, want = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl = ARGV[6]
if not born_ok(tonumber(ARGV[7]), tonumber(ARGV[8])) then return -2 end
local pre = P .. 'addr4:' .. pool .. ':'
local function try(a)
  local k = pre .. string.format('%d', a)
  local cur = redis.call('GET', k)
  if (not cur) or cur == sid then
    redis.call('SET', k, sid, 'PX', ttl)
    return true
  end
  return false
end
if want >= first and want <= last and try(want) then return want end
local span = last - first + 1
local c = tonumber(redis.call('GET', P .. 'cursor4:' .. pool) or first)
if c < first or c > last then c = first end
for i = 0, span - 1 do
  local a = first + ((c - first + i) % span)
  if try(a) then
    local nxt = a + 1
    if a == last then nxt = first end
    redis.call('SET', P .. 'cursor4:' .. pool, string.format('%d', nxt))
    return a
  end
end
return -1
"#
    )
}

/// BORN: marks a fresh (or emptied) store at a node's heartbeat, so the refill
/// grace starts when the first node sees it, not at the first login.
/// ARGV: lease_ms, grace. Reply: 1 allocations allowed, 0 still in the grace.
pub fn born_script() -> String {
    format!(
        "{PRELUDE}{}",
        "if born_ok(tonumber(ARGV[1]), tonumber(ARGV[2])) then return 1 end return 0"
    )
}

/// FREE4: release an address claim if SID holds it. ARGV: sid, addr key.
pub const FREE4: &str = r#"
if redis.call('GET', ARGV[2]) == ARGV[1] then redis.call('DEL', ARGV[2]) return 1 end
return 0
"#;

/// OWN: become the owner of SID (first CONNECT of a local login, or a takeover).
/// ARGV: sid, node, lease_ms, record_ms, grace, record JSON ('' for a takeover).
/// Reply: {fence, record} on success; {-1} unknown session; {-2, holder} the owner
/// is alive elsewhere; {-3} store refilling.
pub fn own_script() -> String {
    format!(
        "{PRELUDE}{}",
        r#"
local sid, node, lease, rttl, grace, rec = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local sk = P .. 'sess:' .. sid
if not born_ok(tonumber(lease), grace) and rec == '' then return {-3} end
if rec ~= '' then redis.call('SET', sk, rec, 'PX', rttl) end
local cur = redis.call('GET', sk)
if not cur then return {-1} end
local o = redis.call('GET', P .. 'owner:' .. sid)
if o then
  local holder = string.match(o, '^(.*) %d+$')
  if holder ~= node and redis.call('EXISTS', P .. 'node:' .. holder) == 1 then
    return {-2, holder}
  end
end
local f = redis.call('INCR', P .. 'fence:' .. sid)
redis.call('PEXPIRE', P .. 'fence:' .. sid, rttl)
redis.call('SET', P .. 'owner:' .. sid, node .. ' ' .. f, 'PX', lease)
return {f, cur}
"#
    )
}

/// RENEW: the owner's periodic write-back of one session.
/// ARGV: sid, node, fence, lease_ms, record_ms, record JSON, acct id ('' none),
/// then address keys. Reply: 1 still owner (store refilled if it was empty),
/// 0 another node took the session over (fencing: stop forwarding for it),
/// -1 an address is now held by another session (store lost and refilled by another).
pub fn renew_script() -> String {
    format!(
        "{PRELUDE}{}",
        r#"
local sid, node, fence, lease, rttl, rec, acct = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
born_ok(tonumber(lease), 1)
local ok = P .. 'owner:' .. sid
local mine = node .. ' ' .. string.format('%d', fence)
local o = redis.call('GET', ok)
if o ~= mine then
  if o then return 0 end
  local f = tonumber(redis.call('GET', P .. 'fence:' .. sid) or '0')
  if f > fence then return 0 end
  redis.call('SET', P .. 'fence:' .. sid, string.format('%d', fence), 'PX', rttl)
end
for i = 8, #ARGV do
  local cur = redis.call('GET', ARGV[i])
  if cur and cur ~= sid then return -1 end
end
redis.call('SET', ok, mine, 'PX', lease)
redis.call('PEXPIRE', P .. 'fence:' .. sid, rttl)
redis.call('SET', P .. 'sess:' .. sid, rec, 'PX', rttl)
for i = 8, #ARGV do redis.call('SET', ARGV[i], sid, 'PX', rttl) end
if acct ~= '' then redis.call('SET', P .. 'acct:' .. acct, sid, 'PX', rttl) end
return 1
"#
    )
}

/// RELEASE: the session ended on its owner: delete it and free its addresses.
/// ARGV: sid, node, fence, acct id ('' none), then address keys.
/// Reply: 1 released; 0 not the owner any more (nothing changed).
pub const RELEASE: &str = r#"
local P = 'headend:'
local sid, mine, acct = ARGV[1], ARGV[2] .. ' ' .. ARGV[3], ARGV[4]
local o = redis.call('GET', P .. 'owner:' .. sid)
if o and o ~= mine then return 0 end
local f = tonumber(redis.call('GET', P .. 'fence:' .. sid) or '0')
if f > tonumber(ARGV[3]) then return 0 end
redis.call('DEL', P .. 'sess:' .. sid, P .. 'owner:' .. sid, P .. 'fence:' .. sid)
if acct ~= '' then redis.call('DEL', P .. 'acct:' .. acct) end
for i = 5, #ARGV do
  if redis.call('GET', ARGV[i]) == sid then redis.call('DEL', ARGV[i]) end
end
return 1
"#;

/// What an OWN reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnOutcome {
    /// This node owns the session now, with this fencing token and record.
    Owned { fence: u64, record: String },
    /// No such session in the cluster (cookie expired or never valid).
    Unknown,
    /// The owner's lease is valid and the node is alive.
    HeldBy(String),
    /// The store restarted empty; nodes are writing their sessions back.
    Refilling,
}

impl OwnOutcome {
    pub fn from_reply(v: &[redis::Value]) -> Result<Self, String> {
        use redis::Value;
        let int = |x: &Value| match x {
            Value::Int(i) => Some(*i),
            _ => None,
        };
        let text = |x: &Value| match x {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let code = v.first().and_then(int).ok_or("OWN: no code")?;
        Ok(match code {
            -1 => OwnOutcome::Unknown,
            -2 => OwnOutcome::HeldBy(v.get(1).and_then(text).unwrap_or_default()),
            -3 => OwnOutcome::Refilling,
            f if f > 0 => OwnOutcome::Owned {
                fence: f as u64,
                record: v.get(1).and_then(text).ok_or("OWN: no record")?,
            },
            other => return Err(format!("OWN: unexpected code {other}")),
        })
    }
}

/// What a RENEW reply means for the local copy of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOutcome {
    StillOwner,
    /// Another node holds it now: drop the local copy without a Stop.
    TakenOver,
    /// The store lost it and another session got its address meanwhile.
    AddressConflict,
}

impl RenewOutcome {
    pub fn from_code(c: i64) -> Self {
        match c {
            1 => RenewOutcome::StillOwner,
            -1 => RenewOutcome::AddressConflict,
            _ => RenewOutcome::TakenOver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn owner_values_round_trip_and_node_names_may_have_spaces() {
        assert_eq!(parse_owner(&owner_value("a", 7)), Some(("a", 7)));
        assert_eq!(parse_owner("node b 12"), Some(("node b", 12)));
        assert_eq!(parse_owner("nofence"), None);
        assert_eq!(parse_owner("a x"), None);
    }

    #[test]
    fn keys_share_the_prefix_and_addresses_are_integers() {
        let a: std::net::Ipv4Addr = "198.18.100.10".parse().unwrap();
        assert_eq!(addr4("VPN-POOL", a), "headend:addr4:VPN-POOL:3323094026");
        assert!(session("ab").starts_with(PREFIX));
        assert_eq!(session_pattern(), "headend:sess:*");
        // The Lua scripts spell the prefix out: keep them in step.
        for s in [
            alloc4_script(),
            own_script(),
            renew_script(),
            RELEASE.into(),
        ] {
            assert!(s.contains("'headend:'"), "{s}");
        }
    }

    #[test]
    fn own_replies_are_decoded() {
        let ok = OwnOutcome::from_reply(&[Value::Int(3), Value::BulkString(b"{}".to_vec())]);
        assert_eq!(
            ok,
            Ok(OwnOutcome::Owned {
                fence: 3,
                record: "{}".into()
            })
        );
        assert_eq!(
            OwnOutcome::from_reply(&[Value::Int(-1)]),
            Ok(OwnOutcome::Unknown)
        );
        assert_eq!(
            OwnOutcome::from_reply(&[Value::Int(-2), Value::BulkString(b"A".to_vec())]),
            Ok(OwnOutcome::HeldBy("A".into()))
        );
        assert_eq!(
            OwnOutcome::from_reply(&[Value::Int(-3)]),
            Ok(OwnOutcome::Refilling)
        );
        assert!(OwnOutcome::from_reply(&[]).is_err());
        assert!(OwnOutcome::from_reply(&[Value::Int(0)]).is_err());
        assert!(OwnOutcome::from_reply(&[Value::Int(2)]).is_err());
    }

    #[test]
    fn renew_codes() {
        assert_eq!(RenewOutcome::from_code(1), RenewOutcome::StillOwner);
        assert_eq!(RenewOutcome::from_code(0), RenewOutcome::TakenOver);
        assert_eq!(RenewOutcome::from_code(-1), RenewOutcome::AddressConflict);
    }
}
