//! MX checks: can a domain receive mail at all? One DNS verdict per domain
//! with hickory-resolver, following RFC 5321 §5.1 (MX, else the implicit MX
//! of an A/AAAA record) and RFC 7505 (null MX: the domain accepts no mail).
//!
//! A check never turns a DNS failure into "invalid": timeouts, SERVFAIL and
//! refused queries are [`MxVerdict::Unknown`], and only answers the DNS
//! actually gave (NXDOMAIN, null MX, no mail host) are undeliverable.
//! Verdicts are cached for the TTL of the records behind them; negative
//! answers for a bounded time, unknown ones not at all. This module does not
//! decide what happens to a contact; hygiene and import do that.
//!
//! The name servers come from `[dns]` in cartero.toml (tests point them at a
//! dnsmasq on loopback); empty means the system's resolv.conf.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use serde::Serialize;

use crate::config::DnsConfig;

/// How long a negative answer (NXDOMAIN, null MX, no mail host) is trusted
/// at most, whatever the zone's SOA says: a domain being set up should not
/// stay "undeliverable" for a day.
pub const NEGATIVE_TTL_MAX: Duration = Duration::from_secs(15 * 60);
/// Negative TTL when the answer carries no SOA to take one from.
pub const NEGATIVE_TTL_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// Longest time a positive verdict is kept, even with a longer record TTL.
pub const POSITIVE_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Cached domains at most; past it, expired entries go, then everything.
pub const CACHE_CAPACITY: usize = 200_000;
/// MX hosts whose addresses are looked up before giving up on a domain.
const MAX_HOSTS_CHECKED: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum MxError {
    #[error("dns.nameservers[{index}]: {value:?} is not an IP address or IP:port")]
    NameServer { index: usize, value: String },
    #[error("dns.concurrency must be at least 1")]
    Concurrency,
    #[error("dns.timeout_ms must be at least 1")]
    Timeout,
    #[error("dns: cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
}

/// What DNS says about mail to a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum MxVerdict {
    /// MX records, by preference then name, with at least one host that has
    /// an address.
    Deliverable { mx: Vec<(u16, String)> },
    /// No MX records, but an A or AAAA record: RFC 5321 §5.1 delivers to
    /// the domain itself.
    ImplicitMx,
    /// RFC 7505 null MX (`MX 0 .`): the domain declares it takes no mail.
    NullMx,
    /// NXDOMAIN: the domain does not exist.
    NoSuchDomain,
    /// The domain exists but nothing can take its mail: neither MX nor
    /// A/AAAA, or every MX host (the first few by preference) is a name
    /// that does not resolve.
    NoMailHost,
    /// The DNS could not tell (timeout, SERVFAIL, refused, network error):
    /// never a reason to call an address invalid.
    Unknown { reason: String },
}

impl MxVerdict {
    /// True when DNS positively says mail cannot be delivered.
    pub fn is_undeliverable(&self) -> bool {
        matches!(self, Self::NullMx | Self::NoSuchDomain | Self::NoMailHost)
    }

    /// A short stable name for tables, flags and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Deliverable { .. } => "deliverable",
            Self::ImplicitMx => "implicit-mx",
            Self::NullMx => "null-mx",
            Self::NoSuchDomain => "no-such-domain",
            Self::NoMailHost => "no-mail-host",
            Self::Unknown { .. } => "unknown",
        }
    }
}

/// Checks domains against the DNS, concurrently and with a cache.
pub struct MxChecker {
    resolver: TokioResolver,
    timeout: Duration,
    concurrency: usize,
    cache: Mutex<Cache>,
}

impl MxChecker {
    pub fn from_config(cfg: &DnsConfig) -> Result<Self, MxError> {
        if cfg.concurrency == 0 {
            return Err(MxError::Concurrency);
        }
        if cfg.timeout_ms == 0 {
            return Err(MxError::Timeout);
        }
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let provider = TokioConnectionProvider::default();
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| MxError::SystemConfig(e.to_string()))?
        } else {
            let mut config = ResolverConfig::new();
            for (index, value) in cfg.nameservers.iter().enumerate() {
                let addr = parse_nameserver(value).ok_or_else(|| MxError::NameServer {
                    index,
                    value: value.clone(),
                })?;
                // UDP first; TCP for answers too big for a datagram.
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        // One try per server: the whole check is bounded by `timeout` anyway,
        // and a retry would only hide a server that does not answer.
        opts.attempts = 1;
        opts.ndots = 0;
        // Our cache holds verdicts; hickory's keeps the records under them.
        opts.cache_size = 1024;
        Ok(Self {
            resolver: builder.build(),
            timeout,
            concurrency: cfg.concurrency,
            cache: Mutex::new(Cache::new(CACHE_CAPACITY)),
        })
    }

    /// The verdict for one domain (Unicode or ASCII), from the cache when
    /// it is still fresh. Takes at most about `timeout_ms`.
    pub async fn check(&self, domain: &str) -> MxVerdict {
        let key = domain.trim_end_matches('.').to_lowercase();
        let now = Instant::now();
        if let Some(v) = self.cache_lock().get(&key, now) {
            return v;
        }
        let (verdict, ttl) = match tokio::time::timeout(self.timeout, self.lookup(&key)).await {
            Ok(result) => result,
            Err(_) => (
                MxVerdict::Unknown {
                    reason: format!("no answer within {} ms", self.timeout.as_millis()),
                },
                None,
            ),
        };
        if let Some(ttl) = ttl {
            self.cache_lock()
                .insert(key, verdict.clone(), Instant::now() + ttl);
        }
        verdict
    }

    /// Checks many domains, at most `concurrency` at once, each distinct
    /// domain once. Results come back in completion order.
    pub async fn check_many<I>(&self, domains: I) -> Vec<(String, MxVerdict)>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<String> = domains
            .into_iter()
            .map(|d| d.as_ref().to_string())
            .filter(|d| seen.insert(d.trim_end_matches('.').to_lowercase()))
            .collect();
        futures::stream::iter(distinct)
            .map(|d| async move {
                let v = self.check(&d).await;
                (d, v)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Domains in the cache right now (fresh or not yet purged).
    pub fn cached(&self) -> usize {
        self.cache_lock().entries.len()
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves a cache that is still
        // consistent (single inserts), so poisoning is ignored.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict and how long it may be cached (`None`: not at all).
    async fn lookup(&self, domain: &str) -> (MxVerdict, Option<Duration>) {
        if domain.starts_with('[') {
            // RFC 5321 §4.1.3 address literal: no DNS involved.
            return (
                MxVerdict::Unknown {
                    reason: "address literal: nothing to look up".into(),
                },
                None,
            );
        }
        let Some(name) = fqdn(domain) else {
            // A name that cannot be written in the DNS cannot exist there.
            return (MxVerdict::NoSuchDomain, Some(NEGATIVE_TTL_MAX));
        };
        let mx = match self.resolver.mx_lookup(name.clone()).await {
            Ok(mx) => mx,
            Err(e) => {
                return match classify(&e) {
                    Negative::NxDomain(ttl) => (MxVerdict::NoSuchDomain, Some(ttl)),
                    Negative::NoRecords(_) => self.implicit_mx(name).await,
                    Negative::Failure(reason) => (MxVerdict::Unknown { reason }, None),
                };
            }
        };
        let ttl = positive_ttl(mx.valid_until());
        let records: Vec<(u16, Name)> = mx
            .iter()
            .map(|r| (r.preference(), r.exchange().clone()))
            .collect();
        let Some(hosts) = usable_hosts(&records) else {
            return (MxVerdict::NullMx, Some(ttl.min(NEGATIVE_TTL_MAX)));
        };
        if hosts.is_empty() {
            // Answer with MX records of another name only (CNAME games):
            // treat as no MX at all.
            return self.implicit_mx(name).await;
        }
        // RFC 5321 §5.1: the MX hosts must resolve to addresses. Look at the
        // most preferred ones until one does.
        let mut failure = None;
        for (_, host) in hosts.iter().take(MAX_HOSTS_CHECKED) {
            match self.has_address(host).await {
                Ok(true) => return (MxVerdict::Deliverable { mx: hosts }, Some(ttl)),
                Ok(false) => {}
                Err(reason) => failure = Some(reason),
            }
        }
        match failure {
            Some(reason) => (
                MxVerdict::Unknown {
                    reason: format!("MX host lookup failed: {reason}"),
                },
                None,
            ),
            None => (MxVerdict::NoMailHost, Some(NEGATIVE_TTL_DEFAULT)),
        }
    }

    /// No MX: RFC 5321 §5.1 falls back to the domain's own A/AAAA records.
    async fn implicit_mx(&self, name: Name) -> (MxVerdict, Option<Duration>) {
        match self.resolver.lookup_ip(name).await {
            Ok(ips) if ips.iter().next().is_some() => {
                (MxVerdict::ImplicitMx, Some(positive_ttl(ips.valid_until())))
            }
            Ok(_) => (MxVerdict::NoMailHost, Some(NEGATIVE_TTL_DEFAULT)),
            Err(e) => match classify(&e) {
                Negative::NxDomain(ttl) => (MxVerdict::NoSuchDomain, Some(ttl)),
                Negative::NoRecords(ttl) => (MxVerdict::NoMailHost, Some(ttl)),
                Negative::Failure(reason) => (MxVerdict::Unknown { reason }, None),
            },
        }
    }

    /// Whether a host name has an A or AAAA record; `Err` when the DNS
    /// could not tell.
    async fn has_address(&self, host: &str) -> Result<bool, String> {
        let Some(name) = fqdn(host) else {
            return Ok(false);
        };
        match self.resolver.lookup_ip(name).await {
            Ok(ips) => Ok(ips.iter().next().is_some()),
            Err(e) => match classify(&e) {
                Negative::NxDomain(_) | Negative::NoRecords(_) => Ok(false),
                Negative::Failure(reason) => Err(reason),
            },
        }
    }
}

/// `IP` or `IP:port` (`[v6]:port`); port 53 when absent.
fn parse_nameserver(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr);
    }
    value
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A fully qualified DNS name (IDNA-encoded), so no search domain of the
/// resolver configuration is ever appended.
fn fqdn(domain: &str) -> Option<Name> {
    let ascii = idna::domain_to_ascii(domain.trim_end_matches('.')).ok()?;
    if ascii.is_empty() {
        return None;
    }
    // From its labels, not `Name::from_ascii`: that reads `\` as an
    // escape, so a domain ending in a backslash became a relative name
    // (found by the property test below). A label is what the address has.
    let name = Name::from_labels(ascii.split('.').map(str::as_bytes)).ok()?;
    name.is_fqdn().then_some(name)
}

/// The MX targets mail can go to, by preference then name, without the
/// trailing dot. `None` for a null MX: RFC 7505 §3 says a domain with a
/// null MX must publish no other MX, so "." as the only target means "no
/// mail"; a "." beside real hosts is ignored as a misconfiguration.
fn usable_hosts(records: &[(u16, Name)]) -> Option<Vec<(u16, String)>> {
    let mut hosts: Vec<(u16, String)> = records
        .iter()
        .filter(|(_, n)| !n.is_root())
        .map(|(p, n)| {
            let s = n.to_ascii().to_lowercase();
            (*p, s.trim_end_matches('.').to_string())
        })
        .collect();
    if hosts.is_empty() && !records.is_empty() {
        return None;
    }
    hosts.sort();
    hosts.dedup();
    Some(hosts)
}

enum Negative {
    /// NXDOMAIN, cacheable for this long.
    NxDomain(Duration),
    /// The name exists but has no record of the type (NODATA).
    NoRecords(Duration),
    /// The DNS did not give an answer we can rely on.
    Failure(String),
}

fn classify(e: &ResolveError) -> Negative {
    if let Some(proto) = e.proto() {
        match proto.kind() {
            ProtoErrorKind::NoRecordsFound {
                response_code,
                negative_ttl,
                ..
            } => {
                let ttl = negative_ttl
                    .map(|s| Duration::from_secs(u64::from(s)))
                    .unwrap_or(NEGATIVE_TTL_DEFAULT)
                    .min(NEGATIVE_TTL_MAX);
                return match *response_code {
                    ResponseCode::NXDomain => Negative::NxDomain(ttl),
                    ResponseCode::NoError => Negative::NoRecords(ttl),
                    code => Negative::Failure(format!("server answered {code}")),
                };
            }
            ProtoErrorKind::Timeout => return Negative::Failure("DNS query timed out".into()),
            _ => {}
        }
    }
    Negative::Failure(e.to_string())
}

fn positive_ttl(valid_until: Instant) -> Duration {
    valid_until
        .saturating_duration_since(Instant::now())
        .min(POSITIVE_TTL_MAX)
}

/// Verdicts by lower-cased domain with their expiry.
struct Cache {
    entries: HashMap<String, (MxVerdict, Instant)>,
    capacity: usize,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    fn get(&mut self, domain: &str, now: Instant) -> Option<MxVerdict> {
        match self.entries.get(domain) {
            Some((v, expires)) if *expires > now => Some(v.clone()),
            Some(_) => {
                self.entries.remove(domain);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, domain: String, verdict: MxVerdict, expires: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&domain) {
            let now = Instant::now();
            self.entries.retain(|_, (_, e)| *e > now);
            if self.entries.len() >= self.capacity {
                // Bounded memory beats a perfect hit rate: start over.
                self.entries.clear();
            }
        }
        self.entries.insert(domain, (verdict, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn null_mx_alone_means_no_mail() {
        assert_eq!(usable_hosts(&[(0, Name::root())]), None);
    }

    #[test]
    fn null_mx_beside_real_hosts_is_ignored() {
        let hosts = usable_hosts(&[(0, Name::root()), (10, name("mx.example.org."))]);
        assert_eq!(hosts, Some(vec![(10, "mx.example.org".to_string())]));
    }

    #[test]
    fn hosts_sorted_by_preference_then_name_lower_cased() {
        let hosts = usable_hosts(&[
            (20, name("B.example.org.")),
            (10, name("z.example.org.")),
            (20, name("a.example.org.")),
            (10, name("z.example.org.")),
        ])
        .unwrap();
        assert_eq!(
            hosts,
            vec![
                (10, "z.example.org".to_string()),
                (20, "a.example.org".to_string()),
                (20, "b.example.org".to_string()),
            ]
        );
    }

    #[test]
    fn nameserver_addresses() {
        assert_eq!(
            parse_nameserver("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("192.0.2.1"),
            Some("192.0.2.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_nameserver("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_nameserver("localhost:53"), None);
        assert_eq!(parse_nameserver(""), None);
    }

    #[test]
    fn bad_nameserver_names_its_index() {
        let cfg = DnsConfig {
            nameservers: vec!["127.0.0.1:53".into(), "dns.example".into()],
            ..DnsConfig::default()
        };
        let err = MxChecker::from_config(&cfg).err().unwrap();
        assert_eq!(
            err.to_string(),
            "dns.nameservers[1]: \"dns.example\" is not an IP address or IP:port"
        );
    }

    #[test]
    fn zero_concurrency_is_rejected() {
        let cfg = DnsConfig {
            nameservers: vec!["127.0.0.1:53".into()],
            concurrency: 0,
            ..DnsConfig::default()
        };
        assert!(matches!(
            MxChecker::from_config(&cfg),
            Err(MxError::Concurrency)
        ));
    }

    #[test]
    fn fqdn_encodes_idn_and_rejects_impossible_names() {
        assert_eq!(
            fqdn("Bücher.example").unwrap().to_ascii(),
            "xn--bcher-kva.example."
        );
        assert_eq!(fqdn("example.org.").unwrap().to_ascii(), "example.org.");
        assert!(fqdn("").is_none());
        // A backslash is a character of the label, not an escape.
        assert!(fqdn("\\").is_some_and(|n| n.is_fqdn()));
        assert!(fqdn("a\\.example").is_some_and(|n| n.is_fqdn() && n.num_labels() == 2));
        assert!(fqdn(&format!("{}.org", "a".repeat(64))).is_none());
    }

    #[test]
    fn undeliverable_only_on_real_answers() {
        assert!(MxVerdict::NullMx.is_undeliverable());
        assert!(MxVerdict::NoSuchDomain.is_undeliverable());
        assert!(MxVerdict::NoMailHost.is_undeliverable());
        assert!(!MxVerdict::ImplicitMx.is_undeliverable());
        assert!(!MxVerdict::Deliverable { mx: vec![] }.is_undeliverable());
        assert!(
            !MxVerdict::Unknown {
                reason: "timeout".into()
            }
            .is_undeliverable()
        );
    }

    #[test]
    fn verdict_json_is_tagged() {
        let v = MxVerdict::Deliverable {
            mx: vec![(10, "mx.example.org".into())],
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"verdict":"deliverable","mx":[[10,"mx.example.org"]]}"#
        );
        assert_eq!(
            serde_json::to_string(&MxVerdict::NullMx).unwrap(),
            r#"{"verdict":"null-mx"}"#
        );
    }

    #[test]
    fn cache_expires_entries() {
        let mut c = Cache::new(10);
        let t0 = Instant::now();
        c.insert(
            "a.org".into(),
            MxVerdict::ImplicitMx,
            t0 + Duration::from_secs(5),
        );
        assert_eq!(c.get("a.org", t0), Some(MxVerdict::ImplicitMx));
        assert_eq!(c.get("a.org", t0 + Duration::from_secs(6)), None);
        assert!(c.entries.is_empty(), "expired entry is removed on read");
    }

    #[test]
    fn cache_stays_within_capacity() {
        let mut c = Cache::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..10 {
            c.insert(format!("d{i}.org"), MxVerdict::NullMx, later);
            assert!(c.entries.len() <= 3);
        }
        assert_eq!(c.get("d9.org", Instant::now()), Some(MxVerdict::NullMx));
    }

    #[test]
    fn cache_purges_expired_before_dropping_fresh() {
        let mut c = Cache::new(2);
        let now = Instant::now();
        c.insert("old.org".into(), MxVerdict::NullMx, now);
        c.insert(
            "fresh.org".into(),
            MxVerdict::ImplicitMx,
            now + Duration::from_secs(60),
        );
        c.insert(
            "new.org".into(),
            MxVerdict::ImplicitMx,
            now + Duration::from_secs(60),
        );
        assert_eq!(
            c.get("fresh.org", Instant::now()),
            Some(MxVerdict::ImplicitMx)
        );
        assert_eq!(
            c.get("new.org", Instant::now()),
            Some(MxVerdict::ImplicitMx)
        );
    }

    proptest::proptest! {
        #[test]
        fn fqdn_never_panics_and_is_absolute(s in "\\PC{0,300}") {
            if let Some(n) = fqdn(&s) {
                proptest::prop_assert!(n.is_fqdn());
            }
        }
    }

    #[tokio::test]
    async fn address_literal_is_not_looked_up() {
        let cfg = DnsConfig {
            nameservers: vec!["127.0.0.1:9".into()],
            timeout_ms: 200,
            ..DnsConfig::default()
        };
        let checker = MxChecker::from_config(&cfg).unwrap();
        let v = checker.check("[192.0.2.1]").await;
        assert!(matches!(v, MxVerdict::Unknown { .. }), "{v:?}");
        assert_eq!(checker.cached(), 0, "unknown verdicts are not cached");
    }
}
